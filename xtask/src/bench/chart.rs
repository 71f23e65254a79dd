//! A hand-written SVG chart of a scenario's runs: publish → deliver latency percentiles
//! on a log scale (p50, p99, p99.9, max as marks on one line per run) and the delivered
//! rate as a bar beside them.

use super::{format::thousands, load::Merged};

/// One line of the chart.
pub(crate) struct Bar<'a> {
    pub(crate) label: String,
    pub(crate) merged: &'a Merged,
}

const LABEL_WIDTH: f64 = 360.0;
const LATENCY_WIDTH: f64 = 400.0;
const GAP: f64 = 30.0;
const RATE_WIDTH: f64 = 220.0;
const ROW: f64 = 24.0;
const TOP: f64 = 56.0;
/// The latency axis: 0.1 ms to 100 s, log 10.
const LOG_MIN: f64 = -1.0;
const LOG_MAX: f64 = 5.0;

/// The SVG text.
pub(crate) fn svg(title: &str, bars: &[Bar<'_>]) -> String {
    let width = LABEL_WIDTH + LATENCY_WIDTH + GAP + RATE_WIDTH + 90.0;
    let height = TOP + ROW * bars.len() as f64 + 50.0;
    let rate_x = LABEL_WIDTH + LATENCY_WIDTH + GAP;
    let max_rate = bars.iter().map(|b| b.merged.rate()).fold(1.0, f64::max);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{LABEL_WIDTH}\" y=\"42\">latency, ms (log): \
         <tspan fill=\"#1b7837\">● p50</tspan> <tspan fill=\"#2166ac\">● p99</tspan> \
         <tspan fill=\"#762a83\">● p99.9</tspan> <tspan fill=\"#b2182b\">× max</tspan></text>\n\
         <text x=\"{rate_x}\" y=\"42\">delivered msgs/s</text>\n",
        escape(title)
    );
    let bottom = TOP + ROW * bars.len() as f64;
    for decade in (LOG_MIN as i32)..=(LOG_MAX as i32) {
        let x = latency_x(10f64.powi(decade));
        let label = if decade < 0 {
            "0.1".to_owned()
        } else {
            thousands(10f64.powi(decade))
        };
        out.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#ddd\"/>\n\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            bottom + 16.0
        ));
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64 + ROW / 2.0;
        let m = bar.merged;
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LABEL_WIDTH - 10.0,
            y + 4.0,
            escape(&bar.label)
        ));
        let (p50, p99, p999, max) = (
            m.latency_ms(0.5),
            m.latency_ms(0.99),
            m.latency_ms(0.999),
            m.max_ms(),
        );
        out.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#999\"/>\n",
            latency_x(p50),
            latency_x(max)
        ));
        for (value, colour) in [(p50, "#1b7837"), (p99, "#2166ac"), (p999, "#762a83")] {
            out.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{colour}\"/>\n",
                latency_x(value)
            ));
        }
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#b2182b\">×</text>\n",
            latency_x(max),
            y + 4.0
        ));
        let w = RATE_WIDTH * m.rate() / max_rate;
        out.push_str(&format!(
            "<rect x=\"{rate_x}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"#4393c3\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            y - ROW / 2.0 + 4.0,
            ROW - 8.0,
            rate_x + w + 4.0,
            y + 4.0,
            thousands(m.rate())
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn latency_x(ms: f64) -> f64 {
    let log = ms.max(10f64.powf(LOG_MIN)).log10().min(LOG_MAX);
    LABEL_WIDTH + LATENCY_WIDTH * (log - LOG_MIN) / (LOG_MAX - LOG_MIN)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::latency_x;

    #[test]
    fn latency_axis_is_logarithmic_and_clamped() {
        let one = latency_x(1.0);
        let ten = latency_x(10.0);
        let hundred = latency_x(100.0);
        assert!((hundred - ten - (ten - one)).abs() < 1e-9);
        assert_eq!(latency_x(0.0), latency_x(0.1));
        assert_eq!(latency_x(1e9), latency_x(1e5));
    }
}
