//! SVG line charts of benchmark results, written as plain text: no plotting crate needed.

use std::fmt::{self, Write};

use serde_json::Value;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
// Plot area margins: room for the title, tick labels and axis labels.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
// Keeps the outermost markers off the y axis and the right edge.
const INSET: f64 = 16.0;
const PALETTE: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const DASH: &str = r#" stroke-dasharray="6 4""#;
/// Results' `accounts` values and the operator's `accounts` setting they stand for.
const MODES: [(&str, &str); 2] = [("Every", r#"["*"]"#), ("Default", r#"["default"]"#)];

/// A line of measured points: (namespaces, seconds or MiB).
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_x: bool,
}

/// Maps data values linearly (or in log10 space) onto a pixel range.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    px: (f64, f64),
}

impl Scale {
    fn map(&self, v: f64) -> f64 {
        let t = |v: f64| if self.log { v.log10() } else { v };
        let (lo, hi) = (t(self.lo), t(self.hi));
        // A single distinct value has no span: centre it.
        let frac = if hi > lo { (t(v) - lo) / (hi - lo) } else { 0.5 };
        self.px.0 + frac * (self.px.1 - self.px.0)
    }
}

impl Chart {
    pub fn to_svg(&self) -> String {
        let mut svg = String::new();
        self.write_svg(&mut svg).expect("writing to a String cannot fail");
        svg
    }

    fn write_svg(&self, svg: &mut String) -> fmt::Result {
        let series: Vec<_> = self.series.iter().map(|s| usable(&s.points, self.log_x)).collect();
        let all: Vec<(f64, f64)> = series.iter().flatten().copied().collect();
        let xs: Vec<f64> = all.iter().map(|p| p.0).collect();
        let (x, x_ticks) = x_axis(&xs, self.log_x);
        let (y, y_ticks) = linear(all.iter().map(|p| p.1).fold(0.0, f64::max), (HEIGHT - BOTTOM, TOP));

        write!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" "#)?;
        writeln!(svg, r#"viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#)?;
        writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#)?;
        self.write_axes(svg, &x, &x_ticks, &y, &y_ticks)?;
        for (i, (s, points)) in self.series.iter().zip(&series).enumerate() {
            let (color, dash) = (PALETTE[i % PALETTE.len()], if s.dashed { DASH } else { "" });
            let px: Vec<(f64, f64)> = points.iter().map(|&(a, b)| (x.map(a), y.map(b))).collect();
            // A polyline needs two points; a lone measurement is shown by its marker alone.
            if px.len() > 1 {
                let coords = px.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ");
                writeln!(svg, r#"<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#)?;
            }
            for (cx, cy) in px {
                writeln!(svg, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3.5" fill="{color}"/>"#)?;
            }
        }
        if all.is_empty() {
            let (cx, cy) = ((LEFT + WIDTH - RIGHT) / 2.0, (TOP + HEIGHT - BOTTOM) / 2.0);
            text(svg, cx, cy, r##" text-anchor="middle" font-size="14" fill="#888""##, "no data")?;
        }
        self.write_legend(svg)?;
        writeln!(svg, "</svg>")
    }

    fn write_axes(&self, svg: &mut String, x: &Scale, x_ticks: &[f64], y: &Scale, y_ticks: &[f64]) -> fmt::Result {
        let (left, right, top, bottom) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        for &v in y_ticks {
            let py = y.map(v);
            line(svg, (left, py), (right, py), r##" stroke="#ddd""##)?;
            text(svg, left - 6.0, py + 4.0, r#" text-anchor="end""#, &fmt_num(v))?;
        }
        for &v in x_ticks {
            let px = x.map(v);
            line(svg, (px, bottom), (px, bottom + 5.0), r##" stroke="#333""##)?;
            text(svg, px, bottom + 18.0, r#" text-anchor="middle""#, &fmt_num(v))?;
        }
        writeln!(svg, r##"<path d="M{left} {top} V{bottom} H{right}" fill="none" stroke="#333"/>"##)?;
        text(svg, WIDTH / 2.0, 24.0, r#" text-anchor="middle" font-size="16" font-weight="bold""#, &self.title)?;
        text(svg, (left + right) / 2.0, HEIGHT - 12.0, r#" text-anchor="middle""#, &self.x_label)?;
        // Rotated about the origin, so the label's x is the negated vertical centre.
        text(svg, -(top + bottom) / 2.0, 18.0, r#" transform="rotate(-90)" text-anchor="middle""#, &self.y_label)
    }

    /// Top left inside the plot: the measured curves rise to the right, so it stays clear.
    fn write_legend(&self, svg: &mut String) -> fmt::Result {
        if self.series.is_empty() {
            return Ok(());
        }
        let (x0, y0, row) = (LEFT + 10.0, TOP + 8.0, 18.0);
        let longest = self.series.iter().map(|s| s.label.chars().count()).max().unwrap_or(0);
        let (w, h) = (longest as f64 * 7.0 + 44.0, self.series.len() as f64 * row + 8.0);
        let frame = r##"fill="white" fill-opacity="0.85" stroke="#ccc""##;
        writeln!(svg, r#"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" {frame}/>"#)?;
        for (i, s) in self.series.iter().enumerate() {
            let cy = y0 + 4.0 + row * (i as f64 + 0.5);
            let dash = if s.dashed { DASH } else { "" };
            let stroke = format!(r#" stroke="{}" stroke-width="2"{dash}"#, PALETTE[i % PALETTE.len()]);
            line(svg, (x0 + 6.0, cy), (x0 + 30.0, cy), &stroke)?;
            text(svg, x0 + 36.0, cy + 4.0, "", &s.label)?;
        }
        Ok(())
    }
}

/// A `<text>` element; `extra` holds further attributes, the content is escaped.
fn text(svg: &mut String, x: f64, y: f64, extra: &str, content: &str) -> fmt::Result {
    writeln!(svg, r#"<text x="{x:.1}" y="{y:.1}"{extra}>{}</text>"#, escape(content))
}

fn line(svg: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), extra: &str) -> fmt::Result {
    writeln!(svg, r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"{extra}/>"#)
}

/// Drawable points sorted by x: finite, y ≥ 0 (the axis starts at 0) and x > 0 on a log axis.
fn usable(points: &[(f64, f64)], log_x: bool) -> Vec<(f64, f64)> {
    let mut out = points.to_vec();
    out.retain(|&(x, y)| x.is_finite() && y.is_finite() && y >= 0.0 && if log_x { x > 0.0 } else { x >= 0.0 });
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The x scale and its ticks: the measured sizes on a log axis, round steps from 0 otherwise.
fn x_axis(xs: &[f64], log: bool) -> (Scale, Vec<f64>) {
    let px = (LEFT + INSET, WIDTH - RIGHT - INSET);
    if !log {
        return linear(xs.iter().copied().fold(0.0, f64::max), px);
    }
    let mut ticks = xs.to_vec();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let (lo, hi) = (ticks.first().copied().unwrap_or(1.0), ticks.last().copied().unwrap_or(10.0));
    (Scale { lo, hi, log, px }, ticks)
}

/// A scale from 0 to a round value at or above `max`, with evenly spaced ticks.
fn linear(max: f64, px: (f64, f64)) -> (Scale, Vec<f64>) {
    let (top, n) = nice(max);
    let ticks = (0..=n).map(|i| top * i as f64 / n as f64).collect();
    (Scale { lo: 0.0, hi: top, log: false, px }, ticks)
}

/// The smallest 1, 2, 2.5 or 5 × 10^k ≥ `max`, with an interval count giving round steps.
fn nice(max: f64) -> (f64, usize) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let pow = 10f64.powf(max.log10().floor());
    // 10 × pow always covers `max`, even if log10 rounded the exponent down.
    let steps = [(1.0, 5), (2.0, 4), (2.5, 5), (5.0, 5), (10.0, 5)];
    steps.into_iter().map(|(m, n)| (m * pow, n)).find(|&(top, _)| top >= max).unwrap_or((10.0 * pow, 5))
}

/// Whole numbers with thousands separators, others with up to three decimals.
fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() > 1e-9 {
        return format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let digits = (v.round() as i64).unsigned_abs().to_string();
    let groups: Vec<&str> = digits.as_bytes().rchunks(3).rev().map(|g| std::str::from_utf8(g).unwrap()).collect();
    format!("{}{}", if v < 0.0 { "-" } else { "" }, groups.join(","))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One `accounts` mode's (namespaces, `field`) series; `kind` prefixes the legend label.
fn series(rows: &[Value], (mode, accounts): (&str, &str), field: &str, kind: &str, dashed: bool) -> Series {
    let of_mode = rows.iter().filter(|r| r["accounts"] == mode);
    let points = of_mode.filter_map(|r| Some((r["namespaces"].as_f64()?, r[field].as_f64()?))).collect();
    Series { label: format!("{kind}accounts {accounts}"), points, dashed }
}

/// Namespace counts span decades, hence the log x axis.
fn render(title: &str, y_label: &str, series: Vec<Series>) -> String {
    let (title, x_label, y_label) = (title.into(), "namespaces".into(), y_label.into());
    Chart { title, x_label, y_label, series, log_x: true }.to_svg()
}

/// The charts of a benchmark's results.json value (the `results` array, or the whole
/// file's object holding it): (file name, SVG text) pairs.
pub fn charts(results: &Value) -> Vec<(&'static str, String)> {
    let rows = results.get("results").unwrap_or(results).as_array().map_or(&[][..], Vec::as_slice);
    let timing = |title, operator, raw| {
        let pair = |m| [series(rows, m, operator, "operator, ", false), series(rows, m, raw, "raw limit, ", true)];
        render(title, "seconds", MODES.into_iter().flat_map(pair).collect())
    };
    let memory = MODES.into_iter().map(|m| series(rows, m, "peak_rss_mib", "", false)).collect();
    vec![
        ("convergence.svg", timing("Convergence time", "operator_seconds", "raw_seconds")),
        ("rotation.svg", timing("Rotation time", "rotation_seconds", "raw_rotation_seconds")),
        ("memory.svg", render("Peak operator memory", "peak RSS (MiB)", memory)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Balanced tags and no stray `>` or `&` in text: enough XML for hand-written SVG.
    fn assert_well_formed(svg: &str) {
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg""#));
        let mut open = Vec::new();
        for (tag, text) in svg.split('<').skip(1).map(|chunk| chunk.split_once('>').expect("unclosed tag")) {
            assert!(!text.contains('>'), "stray '>' in {text:?}");
            match tag.strip_prefix('/') {
                Some(name) => assert_eq!(open.pop(), Some(name)),
                None if !tag.ends_with('/') => open.push(tag.split_whitespace().next().unwrap()),
                None => {}
            }
        }
        assert!(open.is_empty(), "unclosed {open:?}");
        assert!(svg.match_indices('&').all(|(i, _)| ["&amp;", "&lt;", "&gt;"].iter().any(|e| svg[i..].starts_with(e))));
    }

    /// Marker centres, in pixels.
    fn circles(svg: &str) -> Vec<(f64, f64)> {
        let attr = |l: &str, name| l.split(name).nth(1).unwrap().split('"').nth(1).unwrap().parse().unwrap();
        svg.lines().filter(|l| l.starts_with("<circle")).map(|l| (attr(l, " cx="), attr(l, " cy="))).collect()
    }

    #[test]
    fn charts_are_well_formed_with_points_inside_the_plot() {
        let row = |accounts: &str, n: u32, s: f64| {
            json!({"accounts": accounts, "namespaces": n, "operator_seconds": s, "raw_seconds": s * 0.8,
                "rotation_seconds": s / 4.0, "raw_rotation_seconds": s / 6.0, "peak_rss_mib": 30.0 + s})
        };
        let out = charts(&json!([row("Every", 1000, 3.8), row("Default", 1000, 1.6), row("Every", 30000, 120.0)]));
        assert_eq!(out.iter().map(|c| c.0).collect::<Vec<_>>(), ["convergence.svg", "rotation.svg", "memory.svg"]);
        for ((name, svg), markers) in out.iter().zip([6, 6, 3]) {
            assert_well_formed(svg);
            let points = circles(svg);
            assert_eq!(points.len(), markers, "{name}");
            let inside =
                |&(x, y): &(f64, f64)| (LEFT..=WIDTH - RIGHT).contains(&x) && (TOP..=HEIGHT - BOTTOM).contains(&y);
            assert!(points.iter().all(inside), "{name}: {points:?}");
        }
        // `Default` has one size, so only `Every` gets lines; raw is dashed there and in the legend.
        let convergence = &out[0].1;
        assert_eq!((convergence.matches("<polyline").count(), convergence.matches("stroke-dasharray").count()), (2, 3));
        assert!(convergence.contains(">1,000</text>") && convergence.contains(">30,000</text>"));
    }

    #[test]
    fn scales_are_round_and_log_decades_equally_wide() {
        let (x, ticks) = x_axis(&[100_000.0, 1_000.0, 10_000.0, 1_000.0], true);
        assert_eq!(ticks, [1_000.0, 10_000.0, 100_000.0]);
        let (a, b, c) = (x.map(1e3), x.map(1e4), x.map(1e5));
        assert!(a < b && ((b - a) - (c - b)).abs() < 1e-9, "{a} {b} {c}");
        let tops = [0.0, 0.79, 1.9, 2.2, 3.8, 41.6, 70.3, 100.0].map(|max| nice(max).0);
        assert_eq!(tops, [1.0, 1.0, 2.0, 2.5, 5.0, 50.0, 100.0, 100.0]);
        let labels = [1000.0, 30000.0, 999.0, 1234567.0, 0.6000000001, 2.5].map(fmt_num);
        assert_eq!(labels, ["1,000", "30,000", "999", "1,234,567", "0.6", "2.5"]);
    }

    #[test]
    fn degenerate_input_renders_escaped_and_without_panicking() {
        for results in [json!([]), json!(null), json!({"results": []})] {
            for (_, svg) in charts(&results) {
                assert_well_formed(&svg);
                assert!(svg.contains(">no data<") && circles(&svg).is_empty());
            }
        }
        let points = vec![(f64::NAN, 1.0), (2000.0, f64::INFINITY), (1000.0, 2.0), (0.0, 1.0)];
        let series = vec![Series { label: "R&D".into(), points, dashed: true }];
        let svg =
            Chart { title: "a<b&c".into(), x_label: "<x>".into(), y_label: "y".into(), series, log_x: true }.to_svg();
        assert_well_formed(&svg);
        assert_eq!(circles(&svg).len(), 1);
        assert!(!svg.contains("<polyline") && !svg.contains("NaN") && !svg.contains("inf") && !svg.contains("no data"));
        assert!(svg.contains(">a&lt;b&amp;c<") && svg.contains(">&lt;x&gt;<") && svg.contains(">R&amp;D<"));
    }
}
