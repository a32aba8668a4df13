//! Inline SVG line chart of a patient's affected lung ratio over time. Static markup: no
//! scripts, readable without CSS, text escaped by the template.

use maud::{Markup, html};

use super::patients::Trend;

pub struct Point {
    /// Days since the epoch of the study date; None when the date is missing or invalid
    /// (the points are then spaced evenly in order).
    pub days: Option<i64>,
    /// Label under the x axis (the date as shown).
    pub label: String,
    /// Affected ratio in percent.
    pub value_pct: f64,
    /// The change from the previous point; colours the segment that ends here.
    pub trend: Option<Trend>,
}

fn trend_colour(t: Option<Trend>) -> &'static str {
    match t {
        Some(Trend::Progression) => "#c94a4a",
        Some(Trend::Regression) => "#2f8a55",
        _ => "#1d5fa8",
    }
}

const W: f64 = 1040.0;
const H: f64 = 300.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 56.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 54.0;

/// One decimal, as the chart's coordinates are written.
fn coord(v: f64) -> String {
    format!("{v:.1}")
}

/// The chart, or an explanatory paragraph when there are no points.
pub fn affected_ratio_chart(points: &[Point]) -> Markup {
    if points.is_empty() {
        return html! { p.empty { "No analysed study to chart." } };
    }
    let max = points.iter().map(|p| p.value_pct).fold(0.0_f64, f64::max);
    let y_max = ((max / 10.0).ceil() * 10.0).max(10.0);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let by_date = points.iter().all(|p| p.days.is_some()) && {
        let first = points[0].days;
        points.iter().any(|p| p.days != first)
    };
    let xs: Vec<f64> = if by_date {
        let lo = points.iter().filter_map(|p| p.days).min().unwrap_or(0) as f64;
        let hi = points.iter().filter_map(|p| p.days).max().unwrap_or(0) as f64;
        points
            .iter()
            .map(|p| LEFT + (p.days.unwrap_or(0) as f64 - lo) / (hi - lo) * plot_w)
            .collect()
    } else if points.len() == 1 {
        vec![LEFT + plot_w / 2.0]
    } else {
        (0..points.len())
            .map(|i| LEFT + i as f64 / (points.len() - 1) as f64 * plot_w)
            .collect()
    };
    let y = |v: f64| TOP + plot_h - v.clamp(0.0, y_max) / y_max * plot_h;
    let mid_y = coord(TOP + plot_h / 2.0);
    // SVG elements get explicit end tags: in HTML, SVG is foreign content, where a start
    // tag without one would swallow its next siblings.
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } xmlns="http://www.w3.org/2000/svg" role="img"
            aria-label="Affected lung volume ratio over time" font-family="system-ui, sans-serif"
            font-size="12"
        {
            rect x=(LEFT) y=(TOP) width=(plot_w) height=(plot_h) fill="#fafbfc" stroke="#dde3ea" {}
            @for i in 0..=5 {
                @let v = y_max * i as f64 / 5.0;
                @let yy = coord(y(v));
                line x1=(LEFT) x2=(LEFT + plot_w) y1=(yy) y2=(yy) stroke="#e4e9ef" {}
                text x=(LEFT - 8.0) y=(coord(y(v) + 4.0)) text-anchor="end" fill="#627d98" { (format!("{v:.0} %")) }
            }
            text x="14" y=(mid_y) fill="#486581" transform={ "rotate(-90 14 " (mid_y) ")" } text-anchor="middle" {
                "affected lung volume"
            }
            @for i in 1..points.len() {
                line x1=(coord(xs[i - 1])) y1=(coord(y(points[i - 1].value_pct))) x2=(coord(xs[i])) y2=(coord(y(points[i].value_pct)))
                    stroke=(trend_colour(points[i].trend)) stroke-width="3" stroke-linecap="round" {}
            }
            @for (p, x) in points.iter().zip(&xs) {
                @let yy = y(p.value_pct);
                circle cx=(coord(*x)) cy=(coord(yy)) r="5.5" fill="#fff" stroke="#16324f" stroke-width="2.5" {}
                text x=(coord(*x)) y=(coord(yy - 11.0)) text-anchor="middle" fill="#16324f" font-weight="600" {
                    (format!("{:.1} %", p.value_pct))
                }
                text x=(coord(*x)) y=(coord(TOP + plot_h + 20.0)) text-anchor="middle" fill="#486581" { (p.label) }
            }
            text x=(coord(LEFT + plot_w / 2.0)) y=(coord(H - 8.0)) text-anchor="middle" fill="#627d98" {
                "study date"
                @if !by_date { " (in order; dates missing or equal)" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_placed_by_date_and_labels_escaped() {
        let pts = [
            Point {
                days: Some(0),
                label: "a".into(),
                value_pct: 0.0,
                trend: None,
            },
            Point {
                days: Some(10),
                label: "<b>".into(),
                value_pct: 20.0,
                trend: Some(Trend::Progression),
            },
            Point {
                days: Some(40),
                label: "c".into(),
                value_pct: 5.0,
                trend: Some(Trend::Regression),
            },
        ];
        let svg = affected_ratio_chart(&pts).into_string();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("stroke=\"#c94a4a\"") && svg.contains("stroke=\"#2f8a55\""));
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        // x of the second point is a quarter of the plot width in (10 of 40 days).
        let x2 = LEFT + (W - LEFT - RIGHT) / 4.0;
        assert!(svg.contains(&format!("cx=\"{x2:.1}\"")), "{svg}");
        // y axis tops out at 20 %.
        assert!(svg.contains(">20 %</text>"));
    }

    #[test]
    fn no_points_says_so() {
        assert!(
            affected_ratio_chart(&[])
                .into_string()
                .contains("No analysed study")
        );
    }
}
