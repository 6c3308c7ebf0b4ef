//! Usage charts drawn by the server: a series of buckets from the usage store becomes the numbers an
//! SVG template draws (one polyline per outcome). No script is needed to see them.

use gatehouse_store::usage::{UsageCounts, UsagePoint};

/// The drawing area of a chart, in SVG user units.
pub(super) const WIDTH: u32 = 720;
pub(super) const HEIGHT: u32 = 160;

/// One outcome's line.
#[derive(Clone, Debug)]
pub(super) struct Series {
    pub label: &'static str,
    /// CSS class giving the line its colour and dash pattern.
    pub class: &'static str,
    /// `x,y x,y …` for `<polyline points>`.
    pub points: String,
    pub total: u64,
}

/// A chart: its title, the largest count (the top of the y axis), the series and the time span.
#[derive(Clone, Debug)]
pub(super) struct Chart {
    pub title: String,
    /// An id for `aria-labelledby`.
    pub id: String,
    pub max: u64,
    pub series: Vec<Series>,
    pub from: String,
    pub to: String,
    pub width: u32,
    pub height: u32,
}

/// The four outcomes of SPEC §12 "Usage", in the order the legend lists them.
/// An outcome's legend label, CSS class, and how to read its count.
type Outcome = (&'static str, &'static str, fn(&UsageCounts) -> u64);

const OUTCOMES: [Outcome; 4] = [
    ("Allowed", "allowed", |c| c.allowed),
    ("401", "unauthorized", |c| c.unauthorized),
    ("403", "forbidden", |c| c.forbidden),
    ("429", "rate-limited", |c| c.rate_limited),
];

pub(super) fn chart(title: &str, points: &[UsagePoint]) -> Chart {
    let max = points.iter().flat_map(|p| OUTCOMES.iter().map(move |(_, _, f)| f(&p.counts))).max().unwrap_or(0);
    let n = points.len().max(2) - 1;
    let series = OUTCOMES
        .iter()
        .map(|(label, class, f)| {
            let coords: Vec<String> = points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let x = i as u64 * u64::from(WIDTH) / n as u64;
                    let v = f(&p.counts);
                    let y = u64::from(HEIGHT) - (v * u64::from(HEIGHT)).checked_div(max).unwrap_or(0);
                    format!("{x},{y}")
                })
                .collect();
            Series { label, class, points: coords.join(" "), total: points.iter().map(|p| f(&p.counts)).sum() }
        })
        .collect();
    let id = title.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
    Chart {
        title: title.to_owned(),
        id: format!("chart-{id}"),
        max,
        series,
        from: points.first().map(|p| super::keys::short_time(p.at)).unwrap_or_default(),
        to: points.last().map(|p| super::keys::short_time(p.at)).unwrap_or_default(),
        width: WIDTH,
        height: HEIGHT,
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_core::Timestamp;

    use super::*;

    #[test]
    fn a_chart_scales_to_the_largest_count_and_totals_each_outcome() {
        let p = |at: i64, a: u64, u: u64| UsagePoint {
            at: Timestamp(at * 60_000),
            counts: UsageCounts { allowed: a, unauthorized: u, forbidden: 0, rate_limited: 0 },
        };
        let c = chart("Per minute", &[p(0, 4, 0), p(1, 2, 1), p(2, 0, 0)]);
        assert_eq!(c.max, 4);
        assert_eq!(c.series[0].points, "0,0 360,80 720,160");
        assert_eq!(c.series[1].points, "0,160 360,120 720,160");
        assert_eq!(c.series.iter().map(|s| s.total).collect::<Vec<_>>(), [6, 1, 0, 0]);
        let empty = chart("Nothing", &[]);
        assert_eq!((empty.max, empty.series[0].points.as_str()), (0, ""));
    }
}
