//! The comparison chart, as hand-written SVG: two panels, throughput and p99 latency against
//! concurrency (log-2 x axis), one colour per stage, keep-alive solid and no keep-alive
//! dashed. Slow-client cells and failed cells are in the table only.
//!
//! Hand-written because the chart is small and fixed, and a plotting crate would cost more
//! build time than this file costs lines.

use std::fmt::Write as _;

use super::cell::Cell;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 470.0;
const PLOT_TOP: f64 = 60.0;
const PLOT_BOTTOM: f64 = 360.0;
const PLOT_WIDTH: f64 = 380.0;
const PANEL_LEFT: [f64; 2] = [80.0, 580.0];
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A y axis: linear from 0, or log-10 between two powers of ten.
#[derive(Debug, Clone, Copy)]
enum Scale {
    Linear { max: f64 },
    Log10 { lo: f64, hi: f64 },
}

impl Scale {
    fn y(self, v: f64) -> f64 {
        let frac = match self {
            Scale::Linear { max } => v / max,
            Scale::Log10 { lo, hi } => (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()),
        };
        PLOT_BOTTOM - frac.clamp(0.0, 1.0) * (PLOT_BOTTOM - PLOT_TOP)
    }

    fn ticks(self) -> Vec<f64> {
        match self {
            Scale::Linear { max } => {
                let step = max / 5.0;
                (0..=5).map(|i| step * i as f64).collect()
            }
            Scale::Log10 { lo, hi } => {
                let (a, b) = (lo.log10().round() as i32, hi.log10().round() as i32);
                (a..=b).map(|e| 10f64.powi(e)).collect()
            }
        }
    }

    fn linear_for(max: f64) -> Scale {
        let max = if max > 0.0 { max } else { 1.0 };
        let raw = max / 5.0;
        let magnitude = 10f64.powi(raw.log10().floor() as i32);
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|&s| s * 5.0 >= max)
            .unwrap_or(10.0 * magnitude);
        Scale::Linear { max: step * 5.0 }
    }

    fn log_for(min: f64, max: f64) -> Scale {
        let min = if min > 0.0 { min } else { 1.0 };
        let max = max.max(min);
        let lo = 10f64.powi(min.log10().floor() as i32);
        let mut hi = 10f64.powi(max.log10().ceil() as i32);
        if hi <= lo {
            hi = lo * 10.0;
        }
        Scale::Log10 { lo, hi }
    }
}

/// The x axis: log 2 of concurrency over the values measured.
#[derive(Debug, Clone, Copy)]
struct XAxis {
    lo: f64,
    hi: f64,
}

impl XAxis {
    fn x(self, left: f64, c: f64) -> f64 {
        left + (c.log2() - self.lo) / (self.hi - self.lo) * PLOT_WIDTH
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn number_label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// An "x" marker centred on (x, y).
fn cross(x: f64, y: f64, color: &str) -> String {
    let (a, b) = (4.5, 4.5);
    format!(
        r#"<path d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="{color}" stroke-width="2.5"/>"#,
        x - a,
        y - b,
        x + a,
        y + b,
        x - a,
        y + b,
        x + a,
        y - b
    )
}

/// Picks one number out of a cell, e.g. its throughput.
type Metric<'a> = &'a dyn Fn(&Cell) -> Option<f64>;

/// The chart for the grid cells (`slow_clients == 0`) that have a result.
pub fn chart(cells: &[Cell], title: &str) -> String {
    let grid: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.slow_clients == 0 && c.failure.is_none() && c.requests_per_sec.is_some())
        .collect();
    let mut stages: Vec<&str> = Vec::new();
    for cell in cells.iter().filter(|c| c.slow_clients == 0) {
        if !stages.contains(&cell.stage.as_str()) {
            stages.push(&cell.stage);
        }
    }
    let mut concurrencies: Vec<u32> = grid.iter().map(|c| c.concurrency).collect();
    concurrencies.sort_unstable();
    concurrencies.dedup();
    let (cmin, cmax) = match (concurrencies.first(), concurrencies.last()) {
        (Some(&a), Some(&b)) if a < b => (f64::from(a), f64::from(b)),
        (Some(&a), _) => (f64::from(a) / 2.0, f64::from(a) * 2.0),
        _ => (1.0, 256.0),
    };
    let x_axis = XAxis {
        lo: cmin.log2(),
        hi: cmax.log2(),
    };
    let rps = |c: &Cell| c.requests_per_sec;
    let p99_ms = |c: &Cell| c.p99_us.filter(|&us| us > 0).map(|us| us as f64 / 1000.0);
    let max_rps = grid.iter().filter_map(|c| rps(c)).fold(0.0, f64::max);
    let p99s: Vec<f64> = grid.iter().filter_map(|c| p99_ms(c)).collect();
    let (p_lo, p_hi) = (
        p99s.iter().copied().fold(f64::INFINITY, f64::min),
        p99s.iter().copied().fold(0.0, f64::max),
    );
    let panels: [(&str, Scale, Metric); 2] = [
        (
            "throughput (req/s)",
            Scale::linear_for(max_rps * 1.05),
            &rps,
        ),
        (
            "p99 latency (ms, log scale)",
            Scale::log_for(if p_lo.is_finite() { p_lo } else { 1.0 }, p_hi),
            &p99_ms,
        ),
    ];

    let mut svg = String::new();
    // Writing to a String cannot fail; results are ignored for that reason.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for (panel, (label, scale, metric)) in panels.iter().enumerate() {
        let left = PANEL_LEFT[panel];
        let right = left + PLOT_WIDTH;
        let _ = writeln!(svg, r#"<g class="panel">"#);
        // Frame, grid lines and tick labels.
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{PLOT_TOP}" width="{PLOT_WIDTH}" height="{}" fill="none" stroke="#444"/>"##,
            PLOT_BOTTOM - PLOT_TOP
        );
        for tick in scale.ticks() {
            let y = scale.y(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left - 6.0,
                y + 4.0,
                number_label(tick)
            );
        }
        for &c in &concurrencies {
            let x = x_axis.x(left, f64::from(c));
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{PLOT_TOP}" x2="{x:.1}" y2="{PLOT_BOTTOM}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{c}</text>"##,
                PLOT_BOTTOM + 16.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">concurrency (connections, log scale)</text>"#,
            left + PLOT_WIDTH / 2.0,
            PLOT_BOTTOM + 36.0
        );
        let mid_y = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{mid_y:.1}" text-anchor="middle" transform="rotate(-90 {:.1} {mid_y:.1})">{}</text>"#,
            left - 55.0,
            left - 55.0,
            escape(label)
        );
        // One line per stage and keep-alive setting.
        for (s, stage) in stages.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            for keepalive in [true, false] {
                let mut points: Vec<(f64, f64, bool)> = grid
                    .iter()
                    .filter(|c| c.stage == *stage && c.keepalive == keepalive)
                    .filter_map(|c| {
                        let x = x_axis.x(left, f64::from(c.concurrency));
                        metric(c).map(|v| (x, scale.y(v), c.errors.is_some_and(|n| n > 0)))
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                if points.is_empty() {
                    continue;
                }
                let dash = if keepalive {
                    ""
                } else {
                    r#" stroke-dasharray="6 4""#
                };
                let coords: Vec<String> = points
                    .iter()
                    .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                    .collect();
                let _ = writeln!(
                    svg,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                    coords.join(" ")
                );
                for &(x, y, had_errors) in &points {
                    // Latency percentiles only cover responses: a cell where most requests
                    // timed out can show a fine p99, so such points are crosses, not dots.
                    let _ = if had_errors {
                        writeln!(svg, "{}", cross(x, y, color))
                    } else {
                        writeln!(
                            svg,
                            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#
                        )
                    };
                }
            }
        }
        let _ = writeln!(svg, "</g>");
    }
    // Legend: one swatch per stage, then the two line styles.
    let legend_y = HEIGHT - 30.0;
    let mut x = PANEL_LEFT[0];
    let _ = writeln!(svg, r#"<g class="legend">"#);
    for (s, stage) in stages.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let plotted = grid.iter().any(|c| c.stage == *stage);
        let label = if plotted {
            stage.to_string()
        } else {
            format!("{stage} (no result)")
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            x + 30.0,
            legend_y + 4.0,
            escape(&label)
        );
        x += 40.0 + 7.0 * label.chars().count() as f64;
    }
    for (label, dash) in [
        ("keep-alive", ""),
        ("no keep-alive", r#" stroke-dasharray="6 4""#),
    ] {
        x += 20.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="#333" stroke-width="2"{dash}/><text x="{}" y="{}">{label}</text>"##,
            x + 30.0,
            x + 36.0,
            legend_y + 4.0
        );
        x += 50.0 + 7.0 * label.len() as f64;
    }
    x += 20.0;
    let _ = writeln!(
        svg,
        r#"{}<text x="{}" y="{}">had errors (see table)</text>"#,
        cross(x + 6.0, legend_y, "#333"),
        x + 16.0,
        legend_y + 4.0
    );
    let _ = writeln!(svg, "</g>\n</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells() -> Vec<Cell> {
        let mut cells = Vec::new();
        for stage in ["stage1", "stage<3>"] {
            for keepalive in [true, false] {
                for (i, c) in [1u32, 16, 64, 256].into_iter().enumerate() {
                    let mut cell = Cell::new(stage, keepalive, c, 0);
                    cell.requests_per_sec = Some(40.0 + 300.0 * i as f64);
                    cell.p99_us = Some(21_000 + 400_000 * i as u64);
                    cell.errors = Some(if c == 256 { 3 } else { 0 });
                    cells.push(cell);
                }
            }
        }
        let mut failed = Cell::new("stage2", true, 16, 0);
        failed.failure = Some("exited".into());
        cells.push(failed);
        cells
    }

    #[test]
    fn chart_is_well_formed_xml() {
        let svg = chart(&cells(), "stages & \"friends\"");
        let doc = roxmltree::Document::parse(&svg).expect("chart parses as XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let count = |tag: &str| {
            doc.descendants()
                .filter(|n| n.tag_name().name() == tag)
                .count()
        };
        // 2 panels x 2 stages with results x 2 keep-alive settings.
        assert_eq!(count("polyline"), 8);
        let dashed = doc
            .descendants()
            .filter(|n| {
                n.tag_name().name() == "polyline" && n.attribute("stroke-dasharray").is_some()
            })
            .count();
        assert_eq!(dashed, 4);
        // c=256 had errors: one cross per line, plus the one in the legend.
        assert_eq!(count("path"), 8 + 1);
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
        for expected in [
            "stages & \"friends\"",
            "throughput (req/s)",
            "stage<3>",
            "stage2",
            "no keep-alive",
            "256",
        ] {
            assert!(
                texts.iter().any(|t| t.contains(expected)),
                "missing text {expected:?}"
            );
        }
    }

    #[test]
    fn chart_without_results_still_parses() {
        let svg = chart(&[], "empty");
        roxmltree::Document::parse(&svg).expect("empty chart parses as XML");
        let one = vec![{
            let mut c = Cell::new("stage1", true, 16, 0);
            c.requests_per_sec = Some(10.0);
            c.p99_us = Some(5);
            c
        }];
        roxmltree::Document::parse(&chart(&one, "one point")).expect("single point parses");
    }

    #[test]
    fn scales() {
        assert!(matches!(Scale::linear_for(930.0), Scale::Linear { max } if max == 1000.0));
        assert!(matches!(Scale::linear_for(0.0), Scale::Linear { max } if max == 1.0));
        assert!(
            matches!(Scale::log_for(21.0, 4200.0), Scale::Log10 { lo, hi } if lo == 10.0 && hi == 10_000.0)
        );
        let log = Scale::log_for(10.0, 1000.0);
        assert_eq!(log.ticks(), [10.0, 100.0, 1000.0]);
        assert_eq!(log.y(10.0), PLOT_BOTTOM);
        assert_eq!(log.y(1000.0), PLOT_TOP);
    }
}
