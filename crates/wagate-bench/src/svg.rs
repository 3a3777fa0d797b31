//! A hand-written SVG line chart: accepted sends/s (left axis) and p99 latency in ms
//! (right axis) against concurrency (log-spaced x), for wagate and the baseline.

use std::fmt::Write;

pub struct Series<'a> {
    pub name: String,
    pub color: &'a str,
    /// true: plotted against the right (latency) axis, dashed.
    pub right_axis: bool,
    /// (concurrency, value)
    pub points: Vec<(usize, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

pub fn chart(title: &str, left_label: &str, right_label: &str, series: &[Series<'_>]) -> String {
    let (w, h) = (760.0, 420.0);
    let (l, r, t, b) = (80.0, 80.0, 50.0, 60.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let xs: Vec<usize> = {
        let mut v: Vec<usize> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let lx = |c: usize| (c.max(1) as f64).log2();
    let (x0, x1) = (
        xs.first().map_or(0.0, |&c| lx(c)),
        xs.last().map_or(1.0, |&c| lx(c)),
    );
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let px = |c: usize| l + (lx(c) - x0) / span * pw;
    let max_of = |right: bool| {
        nice_max(
            series
                .iter()
                .filter(|s| s.right_axis == right)
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0, f64::max),
        )
    };
    let (lmax, rmax) = (max_of(false), max_of(true));
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{title}</text>"#,
        w / 2.0
    );
    // Grid and axes.
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let y = t + ph - f * ph;
        let _ = writeln!(
            o,
            r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}</text><text x="{:.1}" y="{:.1}">{:.1}</text>"##,
            l + pw,
            l - 6.0,
            y + 4.0,
            lmax * f,
            l + pw + 6.0,
            y + 4.0,
            rmax * f
        );
    }
    for &c in &xs {
        let x = px(c);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{c}</text>"##,
            t + ph,
            t + ph + 18.0
        );
    }
    let _ = writeln!(
        o,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">concurrent clients (log scale)</text>"#,
        l + pw / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{left_label}</text>"#,
        t + ph / 2.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate({:.1},{:.1}) rotate(90)" text-anchor="middle">{right_label}</text>"#,
        w - 18.0,
        t + ph / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let max = if s.right_axis { rmax } else { lmax };
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(c, v)| format!("{:.1},{:.1}", px(c), t + ph - (v / max) * ph))
            .collect();
        let dash = if s.right_axis {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            pts.join(" "),
            s.color
        );
        for p in &pts {
            let mut it = p.split(',');
            let (x, y) = (it.next().unwrap_or("0"), it.next().unwrap_or("0"));
            let _ = writeln!(o, r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#, s.color);
        }
        let ly = t + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            l + 10.0,
            l + 34.0,
            s.color,
            l + 40.0,
            ly + 4.0,
            s.name
        );
    }
    o.push_str("</svg>\n");
    o
}
