//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per
//! family, then one `name{label="value"} number` line per sample; histograms as cumulative
//! `_bucket{le="..."}` lines ending with `+Inf`, then `_sum` and `_count`.
//!
//! Label values escape `\`, `"` and line feeds; help text escapes `\` and line feeds (the
//! format's two escaping rules). Metric and label names are ours, fixed in the code.

use std::fmt::Write;

use super::histogram::{HistogramSnapshot, BOUNDS};

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: every sample written until the next `family` belongs to it.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A whole histogram: its buckets, `_sum` and `_count`, under the family's `name`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        for (i, count) in h.cumulative.iter().enumerate() {
            let le = BOUNDS.get(i).map_or("+Inf".to_owned(), |b| number(*b));
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", number(h.sum_seconds));
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.count());
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{name}=\"{}\"", escape_label(value));
        }
        self.out.push('}');
    }
}

/// A label value as the format writes it.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A number as the format writes it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        // Display never uses an exponent and prints 3.0 as "3".
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let table = [
            ("plain", "plain"),
            ("a\"b", "a\\\"b"),
            ("back\\slash", "back\\\\slash"),
            ("two\nlines", "two\\nlines"),
        ];
        for (raw, escaped) in table {
            assert_eq!(escape_label(raw), escaped);
        }
    }

    #[test]
    fn families_samples_and_histograms_have_the_format_shape() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "Things.\nCounted \\ once.");
        e.sample("x_total", &[("route", "a\"b")], 3.0);
        e.sample("x_total", &[], 0.5);
        e.family("d_seconds", Kind::Histogram, "Durations.");
        e.histogram(
            "d_seconds",
            &[("route", "r")],
            &HistogramSnapshot::default(),
        );
        let text = e.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP x_total Things.\\nCounted \\\\ once.");
        assert_eq!(lines[1], "# TYPE x_total counter");
        assert_eq!(lines[2], "x_total{route=\"a\\\"b\"} 3");
        assert_eq!(lines[3], "x_total 0.5");
        assert_eq!(lines[6], "d_seconds_bucket{route=\"r\",le=\"0.001\"} 0");
        assert!(text.contains("d_seconds_bucket{route=\"r\",le=\"+Inf\"} 0\n"));
        assert!(text.ends_with("d_seconds_sum{route=\"r\"} 0\nd_seconds_count{route=\"r\"} 0\n"));
    }

    #[test]
    fn numbers() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.0025), "0.0025");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
