//! Draws `docs/l1_throughput.svg` from criterion's results: aggregate operations per second
//! against threads, for `LocalCache` and each peer, one panel per L1 workload.
//!
//! ```sh
//! cargo bench --bench hot_path -- 'l1_get_hit/|l1_mix_zipf'
//! cargo run --example bench_chart                       # writes docs/l1_throughput.svg
//! cargo run --example bench_chart -- --criterion DIR --out PATH
//! ```
//!
//! Reads `<criterion>/<group>/<contender>/<threads>/new/estimates.json` (default criterion
//! directory: `$CARGO_TARGET_DIR/criterion`, else `target/criterion` in this package), takes the
//! median time of one operation per thread, and plots `threads / median`; the bars are the
//! median's 95 % confidence interval. The `l1_get_hit` panel is required; the Zipf-mix panels
//! are drawn when their results exist. The SVG's text is laid out with plotters' built-in
//! estimate (no font files) and rendered by whatever views the SVG.

use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The panels: criterion group, panel title, y-axis label, required.
const PANELS: [(&str, &str, &str, bool); 3] = [
    (
        "l1_get_hit",
        "verified hit, uniform keys",
        "million gets/s (all threads)",
        true,
    ),
    (
        "l1_mix_zipf_0.9",
        "90 % get / 10 % insert, Zipf(0.9)",
        "million ops/s (all threads)",
        false,
    ),
    (
        "l1_mix_zipf_1.1",
        "90 % get / 10 % insert, Zipf(1.1)",
        "million ops/s (all threads)",
        false,
    ),
];

/// Contenders as `benches/hot_path.rs` names them, with their legend and colour.
const CONTENDERS: [(&str, &str, RGBColor); 4] = [
    (
        "scoped_cache",
        "scoped-cache LocalCache",
        RGBColor(0xd6, 0x27, 0x28),
    ),
    (
        "dashmap_raw",
        "raw DashMap (no bound, no check)",
        RGBColor(0x7f, 0x7f, 0x7f),
    ),
    ("quick_cache", "quick_cache", RGBColor(0x1f, 0x77, 0xb4)),
    ("moka", "moka", RGBColor(0x2c, 0xa0, 0x2c)),
];

const BENCH_COMMAND: &str = "cargo bench --bench hot_path -- 'l1_get_hit/|l1_mix_zipf'";

/// One measured point: threads, and the aggregate rate in million operations per second at the
/// median and at both ends of its confidence interval.
#[derive(Debug, Clone, Copy)]
struct Point {
    threads: usize,
    median: f64,
    low: f64,
    high: f64,
}

/// Per contender (its index in `CONTENDERS`), its points sorted by threads.
type Series = Vec<(usize, Vec<Point>)>;

/// One panel's data.
struct Panel {
    title: &'static str,
    y_label: &'static str,
    series: Series,
}

fn main() -> ExitCode {
    match run() {
        Ok(out) => {
            println!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bench_chart: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut criterion = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest.join("target"), PathBuf::from)
        .join("criterion");
    let mut out = manifest.join("docs").join("l1_throughput.svg");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--criterion" => criterion = PathBuf::from(value()?),
            "--out" => out = PathBuf::from(value()?),
            _ => {
                return Err(format!(
                    "unknown argument {arg}; usage: bench_chart [--criterion DIR] [--out PATH]"
                ));
            }
        }
    }
    let mut panels = Vec::new();
    for (group, title, y_label, required) in PANELS {
        match read_group(&criterion, group)? {
            Some(series) => panels.push(Panel {
                title,
                y_label,
                series,
            }),
            None if required => {
                return Err(format!(
                    "no results for `{group}` in {}: run `{BENCH_COMMAND}` first",
                    criterion.join(group).display()
                ));
            }
            None => eprintln!(
                "bench_chart: no results for `{group}`, its panel is left out (run `{BENCH_COMMAND}`)"
            ),
        }
    }
    draw(&panels, &out).map_err(|error| format!("drawing {}: {error}", out.display()))?;
    Ok(out)
}

/// The group's series, `None` when the group has no results at all; an error when some
/// contender or some file is missing or unreadable.
fn read_group(criterion: &Path, group: &str) -> Result<Option<Series>, String> {
    let group_dir = criterion.join(group);
    if !group_dir.is_dir() {
        return Ok(None);
    }
    let mut series = Vec::new();
    for (index, (contender, _, _)) in CONTENDERS.iter().enumerate() {
        let dir = group_dir.join(contender);
        let entries = std::fs::read_dir(&dir).map_err(|error| {
            format!(
                "{}: {error}; run `{BENCH_COMMAND}` first (every contender of `{group}`)",
                dir.display()
            )
        })?;
        let mut points = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| format!("{}: {error}", dir.display()))?;
            let Some(threads) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<usize>().ok())
            else {
                continue; // criterion's `report` directory
            };
            points.push(read_point(&entry.path(), threads)?);
        }
        if points.is_empty() {
            return Err(format!(
                "{}: no thread counts measured; run `{BENCH_COMMAND}` first",
                dir.display()
            ));
        }
        points.sort_by_key(|point| point.threads);
        series.push((index, points));
    }
    Ok(Some(series))
}

/// Reads the median (and its confidence interval) of one benchmark, in ns per operation per
/// thread, as an aggregate rate.
fn read_point(bench_dir: &Path, threads: usize) -> Result<Point, String> {
    let path = bench_dir.join("new").join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("{}: {error}; run `{BENCH_COMMAND}` first", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| format!("{}: not criterion's estimates: {error}", path.display()))?;
    let median = &json["median"];
    let nanos = |value: &serde_json::Value| {
        value
            .as_f64()
            .filter(|ns| *ns > 0.0)
            .ok_or(format!("{}: no positive median estimate", path.display()))
    };
    // Million operations per second over all threads, from ns per operation per thread.
    let rate = |ns: f64| threads as f64 * 1e3 / ns;
    Ok(Point {
        threads,
        median: rate(nanos(&median["point_estimate"])?),
        // A longer time is a lower rate: the interval's upper bound gives the low end.
        low: rate(nanos(&median["confidence_interval"]["upper_bound"])?),
        high: rate(nanos(&median["confidence_interval"]["lower_bound"])?),
    })
}

fn draw(panels: &[Panel], out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    const PANEL_WIDTH: u32 = 400;
    let width = PANEL_WIDTH * panels.len() as u32;
    let root = SVGBackend::new(out, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title_area, body) = root.split_vertically(40);
    title_area.titled(
        "L1 throughput vs threads (criterion medians, one run, same binary)",
        ("sans-serif", 18),
    )?;
    let (plots, legend_area) = body.split_vertically(340);
    let max_threads = panels
        .iter()
        .flat_map(|panel| &panel.series)
        .flat_map(|(_, points)| points)
        .map(|point| point.threads)
        .max()
        .unwrap_or(2);
    for (panel, area) in panels.iter().zip(plots.split_evenly((1, panels.len()))) {
        let y_max = panel
            .series
            .iter()
            .flat_map(|(_, points)| points)
            .map(|point| point.high)
            .fold(0.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(&area)
            .caption(panel.title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5f64..max_threads as f64 + 0.5, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_labels(max_threads + 1)
            .x_label_formatter(&|x| {
                if x.fract() == 0.0 && *x >= 1.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .x_desc("threads")
            .y_desc(panel.y_label)
            .y_label_formatter(&|y| format!("{y:.2}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (index, points) in &panel.series {
            let colour = CONTENDERS[*index].2;
            let at = |point: &Point| (point.threads as f64, point.median);
            chart.draw_series(LineSeries::new(
                points.iter().map(at),
                colour.stroke_width(2),
            ))?;
            chart.draw_series(
                points
                    .iter()
                    .map(|point| Circle::new(at(point), 4, colour.filled())),
            )?;
            chart.draw_series(points.iter().map(|point| {
                PathElement::new(
                    vec![
                        (point.threads as f64, point.low),
                        (point.threads as f64, point.high),
                    ],
                    colour.stroke_width(1),
                )
            }))?;
        }
    }
    // One legend under all panels.
    let legend_width = width as i32 / CONTENDERS.len() as i32;
    for (slot, (_, label, colour)) in CONTENDERS.iter().enumerate() {
        let x = slot as i32 * legend_width + 20;
        legend_area.draw(&PathElement::new(
            vec![(x, 30), (x + 24, 30)],
            colour.stroke_width(3),
        ))?;
        legend_area.draw(&Circle::new((x + 12, 30), 4, colour.filled()))?;
        legend_area.draw(&Text::new(
            *label,
            (x + 32, 24),
            ("sans-serif", 13).into_font().color(&BLACK),
        ))?;
    }
    legend_area.draw(&Text::new(
        "higher is better; bars: 95 % confidence interval of the median; see BENCHMARKS.md for workloads and machine",
        (20, 58),
        ("sans-serif", 12).into_font().color(&BLACK.mix(0.7)),
    ))?;
    root.present()?;
    Ok(())
}
