//! `--report FILE.html|FILE.svg`: a self-contained picture of a run (or of merged
//! runs), hand-written SVG (no scripts, fonts or network). Five charts — the
//! tick-latency percentile distribution on the HdrHistogram plotter's log "nines" axis,
//! the connections' own median latencies sorted (fairness), messages per second,
//! p50/p99 per second, open connections — plus the parameters and the summary table.

use std::fmt::Write as _;

use crate::run::Second;
use crate::summary::Summary;

const W: f64 = 760.0;
const H: f64 = 250.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 42.0;
const BLUE: &str = "#2563eb";
const GREY: &str = "#94a3b8";

/// What the report draws.
struct ReportData<'a> {
    summary: &'a Summary,
    /// (percentile 0-100, µs) from the steady-window histogram.
    distribution: Vec<(f64, u64)>,
    /// (share of connections 0-100, µs): each connection's median, sorted.
    fairness: Vec<(f64, u64)>,
    timeline: &'a [Second],
    /// Steady window in seconds from the start.
    window: Option<(f64, f64)>,
}

impl<'a> ReportData<'a> {
    fn new(summary: &'a Summary) -> ReportData<'a> {
        ReportData {
            summary,
            distribution: summary.distribution(),
            fairness: summary.fairness_curve(),
            timeline: &summary.timeline,
            window: summary.window,
        }
    }
}

enum XAxis {
    /// Seconds since the start.
    Time { max: f64 },
    /// 0 to 100 %, linear.
    Share,
    /// log10(1 / (1 - p)): 0 = 0 %, 1 = 90 %, 2 = 99 %, ... up to `nines`.
    Nines { nines: u32 },
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

struct Chart<'a> {
    title: &'a str,
    y_label: &'a str,
    x: XAxis,
    series: Vec<Series<'a>>,
    band: Option<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" step (1, 2 or 5 × 10^k) for about five ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn fmt_tick(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Maps a percentile to the plotter's x: how many nines it has.
fn nines_x(percentile: f64, max: f64) -> f64 {
    let tail = 1.0 - percentile / 100.0;
    if tail <= 0.0 { max } else { (1.0 / tail).log10().clamp(0.0, max) }
}

/// A chart's plotting area: its size and the data ranges it maps onto it.
struct Plot {
    pw: f64,
    ph: f64,
    x_max: f64,
    y_max: f64,
    y_step: f64,
}

impl Plot {
    fn new(c: &Chart<'_>) -> Plot {
        let x_max = match c.x {
            XAxis::Time { max } => max.max(1.0),
            XAxis::Share => 100.0,
            XAxis::Nines { nines } => f64::from(nines),
        };
        let y_data_max =
            c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
        // 5 % headroom keeps a flat line off the frame and clear of the legend.
        let y_step = nice_step(y_data_max);
        let y_max = ((y_data_max * 1.05 / y_step).ceil() * y_step).max(y_step);
        Plot { pw: W - LEFT - RIGHT, ph: H - TOP - BOTTOM, x_max, y_max, y_step }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + x / self.x_max * self.pw
    }

    fn py(&self, y: f64) -> f64 {
        TOP + self.ph - y / self.y_max * self.ph
    }
}

/// One chart as an SVG group at (`dx`, `dy`).
fn chart(c: &Chart<'_>, dx: f64, dy: f64) -> String {
    let p = Plot::new(c);
    let (pw, ph) = (p.pw, p.ph);
    let mut g = String::new();
    let _ = write!(
        g,
        r#"<g transform="translate({dx},{dy})" font-family="system-ui,sans-serif" font-size="11">"#
    );
    let _ = write!(g, r##"<rect width="{W}" height="{H}" fill="#fff"/>"##);
    let _ = write!(
        g,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="600">{}</text>"#,
        esc(c.title)
    );
    if let Some((a, b)) = c.band {
        let (a, b) = (p.px(a.clamp(0.0, p.x_max)), p.px(b.clamp(0.0, p.x_max)));
        let _ = write!(
            g,
            r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#dcfce7"/><text x="{:.1}" y="{:.1}" fill="#15803d">steady window</text>"##,
            (b - a).max(0.0),
            a + 4.0,
            TOP + 12.0
        );
    }
    y_grid(&mut g, &p);
    x_grid(&mut g, &p, &c.x);
    let x_label = match c.x {
        XAxis::Time { .. } => "seconds since start",
        XAxis::Share => "connections, sorted by their median",
        XAxis::Nines { .. } => "percentile (log scale of 1 / (1 - p))",
    };
    let _ = write!(
        g,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#334155">{x_label}</text><text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle" fill="#334155">{}</text>"##,
        LEFT + pw / 2.0,
        H - 8.0,
        TOP + ph / 2.0,
        esc(c.y_label)
    );
    let _ = write!(
        g,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#cbd5e1"/>"##
    );
    lines_and_legend(&mut g, &p, &c.series);
    if c.series.iter().all(|s| s.points.is_empty()) {
        let _ = write!(
            g,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#64748b">no data</text>"##,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    g.push_str("</g>");
    g
}

/// Horizontal grid lines and the y ticks.
fn y_grid(g: &mut String, p: &Plot) {
    let mut y = 0.0;
    while y <= p.y_max + p.y_step / 2.0 {
        let yy = p.py(y);
        let _ = write!(
            g,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e2e8f0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#475569">{}</text>"##,
            LEFT + p.pw,
            LEFT - 6.0,
            yy + 4.0,
            fmt_tick(y)
        );
        y += p.y_step;
    }
}

/// Vertical grid lines and the x ticks, labelled as the axis counts.
fn x_grid(g: &mut String, p: &Plot, x: &XAxis) {
    for (x, label) in x_ticks(x, p.x_max) {
        let xx = p.px(x);
        let _ = write!(
            g,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}" stroke="#f1f5f9"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#475569">{}</text>"##,
            TOP + p.ph,
            TOP + p.ph + 15.0,
            esc(&label)
        );
    }
}

/// (x, label) of each tick on the x axis.
fn x_ticks(x: &XAxis, x_max: f64) -> Vec<(f64, String)> {
    match *x {
        XAxis::Time { .. } => {
            let step = nice_step(x_max);
            (0..)
                .map(|i| i as f64 * step)
                .take_while(|x| *x <= x_max + 1e-9)
                .map(|x| (x, fmt_tick(x)))
                .collect()
        }
        XAxis::Share => (0..=5).map(|i| (f64::from(i * 20), format!("{}%", i * 20))).collect(),
        XAxis::Nines { nines } => (0..=nines)
            .map(|n| {
                let label = match n {
                    0 => "0%".to_string(),
                    1 => "90%".to_string(),
                    n => format!("99.{}%", "9".repeat(n as usize - 2)).replace(".%", "%"),
                };
                (f64::from(n), label)
            })
            .collect(),
    }
}

/// Each series as a line, and its entry in the legend (top right).
fn lines_and_legend(g: &mut String, p: &Plot, series: &[Series<'_>]) {
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> =
            s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", p.px(*x), p.py(*y))).collect();
        let _ = write!(
            g,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" stroke-linejoin="round" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        let lx = LEFT + p.pw - 120.0;
        let ly = TOP + 14.0 + 14.0 * i as f64;
        let _ = write!(
            g,
            r#"<line x1="{lx}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            lx + 16.0,
            ly - 4.0,
            ly - 4.0,
            s.color,
            lx + 20.0,
            esc(s.name)
        );
    }
}

fn charts<'a>(d: &'a ReportData<'a>) -> Vec<Chart<'a>> {
    let count = d.summary.hists.tick.count();
    // As many nines as the sample count can resolve, at least to 99.9 %.
    let nines = ((count.max(1) as f64).log10().ceil() as u32).clamp(3, 6);
    let t_max = d.timeline.last().map_or(1.0, |s| s.t as f64 + 1.0);
    let ms = |us: u64| us as f64 / 1000.0;
    let at = |s: &Second| s.t as f64 + 1.0; // a sample covers [t, t + 1)
    vec![
        Chart {
            title: "Tick latency by percentile (steady window)",
            y_label: "latency (ms)",
            x: XAxis::Nines { nines },
            series: vec![Series {
                name: "receive − ts_us",
                color: BLUE,
                points: d
                    .distribution
                    .iter()
                    .map(|(p, us)| (nines_x(*p, f64::from(nines)), ms(*us)))
                    .collect(),
            }],
            band: None,
        },
        Chart {
            title: "Fairness: each connection's median tick latency (steady window)",
            y_label: "median latency (ms)",
            x: XAxis::Share,
            series: vec![Series {
                name: "connection median",
                color: BLUE,
                points: d.fairness.iter().map(|(share, us)| (*share, ms(*us))).collect(),
            }],
            band: None,
        },
        Chart {
            title: "Messages per second",
            y_label: "msgs/s",
            x: XAxis::Time { max: t_max },
            series: vec![Series {
                name: "msgs/s",
                color: BLUE,
                points: d.timeline.iter().map(|s| (at(s), s.messages as f64)).collect(),
            }],
            band: d.window,
        },
        Chart {
            title: "Tick latency per second",
            y_label: "latency (ms)",
            x: XAxis::Time { max: t_max },
            series: vec![
                Series {
                    name: "p99",
                    color: BLUE,
                    points: d
                        .timeline
                        .iter()
                        .filter_map(|s| Some((at(s), ms(s.p99_us?))))
                        .collect(),
                },
                Series {
                    name: "p50",
                    color: GREY,
                    points: d
                        .timeline
                        .iter()
                        .filter_map(|s| Some((at(s), ms(s.p50_us?))))
                        .collect(),
                },
            ],
            band: d.window,
        },
        Chart {
            title: "Open connections",
            y_label: "connections",
            x: XAxis::Time { max: t_max },
            series: vec![Series {
                name: "open",
                color: BLUE,
                points: d.timeline.iter().map(|s| (at(s), s.open as f64)).collect(),
            }],
            band: d.window,
        },
    ]
}

fn title(d: &ReportData<'_>) -> String {
    format!("ticker-load: {} connections to {}", d.summary.connections, d.summary.urls.join(" "))
}

/// A standalone HTML page with the charts inline.
pub(crate) fn html(summary: &Summary) -> String {
    let d = &ReportData::new(summary);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:800px;color:#0f172a;padding:0 1rem}}\
         table{{border-collapse:collapse;margin:0 0 1.5rem;font-size:14px}}td,th{{padding:3px 10px 3px 0;text-align:left;vertical-align:top}}\
         th{{color:#475569;font-weight:500;white-space:nowrap}}svg{{max-width:100%;height:auto;display:block;margin:0 0 1.2rem}}\
         .warn{{color:#b45309}}</style></head><body>\n<h1 style=\"font-size:20px\">{}</h1>\n",
        esc(&title(d)),
        esc(&title(d))
    );
    out.push_str("<h2 style=\"font-size:16px\">Summary</h2><table>\n");
    for (k, v) in d.summary.rows() {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    out.push_str("</table>\n");
    for w in &d.summary.warnings {
        let _ = writeln!(out, "<p class=\"warn\">warning: {}</p>", esc(w));
    }
    for c in charts(d) {
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">{}</svg>",
            esc(c.title),
            chart(&c, 0.0, 0.0)
        );
    }
    out.push_str("<h2 style=\"font-size:16px\">Parameters</h2><table>\n");
    for (k, v) in &d.summary.params {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</table>\n<p style=\"color:#64748b;font-size:12px\">Latency = receive time − the tick's ts_us. \
                  Latency, messages and gaps cover the steady window only (shaded).</p>\n</body></html>\n");
    out
}

/// Splits `text` at spaces into lines of at most `width` characters (longer words stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("lines starts non-empty and only grows");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// One SVG picture: title, parameters, summary lines and warnings, then the charts.
pub(crate) fn svg(summary: &Summary) -> String {
    let d = &ReportData::new(summary);
    const LINE: f64 = 16.0;
    let params: Vec<String> = d.summary.params.iter().map(|(k, v)| format!("{k} {v}")).collect();
    // One entry per line: an optional row label at the left margin, then the text.
    // Widths in characters fit the 760-pixel picture at 11-12 px.
    let mut lines: Vec<(Option<&str>, f64, &str, String)> = Vec::new();
    for l in wrap(&params.join(", "), 118) {
        lines.push((None, 16.0, r##"font-size="11" fill="#475569""##, l));
    }
    let rows = d.summary.rows();
    for (k, v) in &rows {
        for (i, l) in wrap(v, 88).into_iter().enumerate() {
            lines.push(((i == 0).then_some(*k), 130.0, r#"font-size="12""#, l));
        }
    }
    for w in &d.summary.warnings {
        for l in wrap(&format!("warning: {w}"), 100) {
            lines.push((None, 16.0, r##"font-size="12" fill="#b45309""##, l));
        }
    }
    let mut body = String::new();
    let mut y = 44.0;
    for (label, x, css, text) in &lines {
        if let Some(label) = label {
            let _ = write!(
                body,
                r##"<text x="16" y="{y}" font-size="12" fill="#475569">{}</text>"##,
                esc(label)
            );
        }
        let _ = write!(body, r#"<text x="{x}" y="{y}" {css}>{}</text>"#, esc(text));
        y += LINE;
    }
    let text_h = y + 8.0;
    let cs = charts(d);
    let total_h = text_h + H * cs.len() as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {total_h}" width="{W}" height="{total_h}" font-family="system-ui,sans-serif"><rect width="{W}" height="{total_h}" fill="#fff"/><text x="16" y="26" font-size="16" font-weight="600">{}</text>{body}"##,
        esc(&title(d)),
    );
    for (i, c) in cs.iter().enumerate() {
        out.push_str(&chart(c, 0.0, text_h + H * i as f64));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(47.0), 10.0);
        assert_eq!(nice_step(0.9), 0.2);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn percentiles_map_to_their_count_of_nines() {
        assert_eq!(nines_x(0.0, 5.0), 0.0);
        assert!((nines_x(90.0, 5.0) - 1.0).abs() < 1e-9);
        assert!((nines_x(99.9, 5.0) - 3.0).abs() < 1e-6);
        assert_eq!(nines_x(100.0, 5.0), 5.0);
    }

    #[test]
    fn long_lines_wrap_at_spaces() {
        assert_eq!(wrap("aaa bbb ccc", 7), ["aaa bbb", "ccc"]);
        assert_eq!(wrap("averylongword x", 4), ["averylongword", "x"]);
        assert_eq!(wrap("", 4), [""]);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(20000.0), "20k");
    }
}
