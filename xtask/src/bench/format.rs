//! Number formatting shared by the benchmark reports.

/// 12345.6 → "12,346".
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A per-message count: whole numbers plain, fractions with enough digits to matter.
pub(crate) fn short(value: f64) -> String {
    if value > 0.0 && value < 0.1 {
        format!("{value:.4}")
    } else if (value - value.round()).abs() < 0.005 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// One row of a section's target table: what the issue asks, what the run measured, and
/// whether that meets it.
pub(crate) struct Target {
    pub(crate) target: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
}

/// `### Targets` with one row per target, verdicts computed from the run's own numbers (the
/// reasons behind a "not met" are in the hand-written findings of docs/benchmarks.md).
pub(crate) fn targets_table(targets: &[Target]) -> String {
    let mut text = "### Targets\n\n| target | measured | verdict |\n|---|---|---|\n".to_owned();
    for t in targets {
        let verdict = if t.met { "met" } else { "**not met**" };
        text.push_str(&format!("| {} | {} | {verdict} |\n", t.target, t.measured));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::{Target, short, targets_table, thousands};

    #[test]
    fn target_tables_say_met_or_not_met() {
        let text = targets_table(&[
            Target {
                target: "≥ 5".to_owned(),
                measured: "6".to_owned(),
                met: true,
            },
            Target {
                target: "≤ 8 KiB".to_owned(),
                measured: "12 KiB".to_owned(),
                met: false,
            },
        ]);
        assert!(text.contains("| ≥ 5 | 6 | met |"));
        assert!(text.contains("| ≤ 8 KiB | 12 KiB | **not met** |"));
    }

    #[test]
    fn formats_numbers_for_the_tables() {
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.6), "1,235");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(short(3.0), "3");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(0.005), "0.0050");
        assert_eq!(short(0.002), "0.0020");
        assert_eq!(short(0.0), "0");
    }
}
