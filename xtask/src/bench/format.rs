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

#[cfg(test)]
mod tests {
    use super::{short, thousands};

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
