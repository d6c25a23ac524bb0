//! Report plots, each written as PNG and SVG. Text uses the bundled DejaVu Sans through
//! plotters' `ab_glyph` backend, so output never depends on the system's fonts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dissect_io::{commit_file, temp_path_keeping_extension};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::histogram::Histogram;
use crate::noise::NoiseDetection;
use crate::table::StrategyResult;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the bundled font under every family and style plotters may ask for, once.
fn ensure_font() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        let styles = [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique];
        ["sans-serif", "serif", "monospace"].iter().all(|f| styles.iter().all(|s| register_font(f, *s, FONT).is_ok()))
    });
    if ok { Ok(()) } else { Err(EvalError::Plot("bundled font could not be parsed".into())) }
}

/// Where one plot was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlotFiles {
    /// The PNG file.
    pub png: PathBuf,
    /// The SVG file.
    pub svg: PathBuf,
}

impl PlotFiles {
    /// `stem.png` and `stem.svg`; creates the parent directory.
    fn for_stem(stem: &Path) -> Result<Self> {
        if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self { png: stem.with_extension("png"), svg: stem.with_extension("svg") })
    }
}

/// Statistics of one epoch's scores. `std` is the population standard deviation; quantiles
/// interpolate linearly between order statistics (numpy's default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochScoreSummary {
    /// The epoch summarised.
    pub epoch: usize,
    /// Finite scores summarised (non-finite ones are dropped).
    pub count: usize,
    /// Mean score.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// 25th percentile.
    pub q25: f64,
    /// Median (50th percentile).
    pub median: f64,
    /// 75th percentile.
    pub q75: f64,
}

/// Summary of one epoch's scores; `None` when no finite score remains.
pub fn summarize_scores(epoch: usize, scores: &[f64]) -> Option<EpochScoreSummary> {
    let mut v: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, frac) = (pos.floor() as usize, pos.fract());
        let hi = (lo + 1).min(v.len() - 1);
        v[lo] + (v[hi] - v[lo]) * frac
    };
    Some(EpochScoreSummary { epoch, count: v.len(), mean, std: var.sqrt(), q25: q(0.25), median: q(0.5), q75: q(0.75) })
}

/// Per-epoch summaries of clean and of noisy pairs' scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreTrajectories {
    /// Clean pairs, one summary per epoch with scores, ascending.
    pub clean: Vec<EpochScoreSummary>,
    /// Noisy pairs, one summary per epoch with scores, ascending.
    pub noisy: Vec<EpochScoreSummary>,
}

/// Builds trajectories from raw `(epoch, CLIPScore, noisy)` records.
pub fn score_trajectories(records: impl IntoIterator<Item = (usize, f64, bool)>) -> ScoreTrajectories {
    let mut clean: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut noisy: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (e, s, is_noisy) in records {
        if is_noisy { &mut noisy } else { &mut clean }.entry(e).or_default().push(s);
    }
    let sum = |m: BTreeMap<usize, Vec<f64>>| m.into_iter().filter_map(|(e, v)| summarize_scores(e, &v)).collect();
    ScoreTrajectories { clean: sum(clean), noisy: sum(noisy) }
}

/// The CLIPScore histogram of one epoch's selected rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochHistogram {
    /// Epoch the rows were selected in.
    pub epoch: usize,
    /// The counts.
    #[serde(flatten)]
    pub histogram: Histogram,
}

/// Per-epoch histograms with `bins` bins over edges shared by all epochs (so panels compare),
/// from `(epoch, score, noisy flag if known)` records of the SELECTED rows. The noisy split is
/// kept for an epoch only if every record of it has a flag. Non-finite scores are skipped.
pub fn selected_histograms(
    records: impl IntoIterator<Item = (usize, f64, Option<bool>)>,
    bins: usize,
) -> Result<Vec<EpochHistogram>> {
    let recs: Vec<_> = records.into_iter().filter(|r| r.1.is_finite()).collect();
    if recs.is_empty() {
        return Err(EvalError::Empty("no scores for histograms"));
    }
    let lo = recs.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    let mut hi = recs.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let empty = Histogram::uniform(lo, hi, bins)?;
    let mut per: BTreeMap<usize, Histogram> = BTreeMap::new();
    for (epoch, score, flag) in recs {
        per.entry(epoch).or_insert_with(|| empty.clone()).add(score, flag);
    }
    Ok(per.into_iter().map(|(epoch, histogram)| EpochHistogram { epoch, histogram }).collect())
}

/// A named `(x, y)` curve, one line in a plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedCurve {
    /// Legend label.
    pub name: String,
    /// The `(x, y)` points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A curve over seeds: at each `x`, the mean and the sample standard deviation of `y`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandCurve {
    /// Legend label.
    pub name: String,
    /// `(x, mean, sd)`, in drawing order.
    pub points: Vec<(f64, f64, f64)>,
}

impl BandCurve {
    /// The mean ± sd over `runs` (one curve per seed) of the `y` values that share an `x`.
    pub fn over_seeds(name: &str, runs: &[Vec<(f64, f64)>]) -> BandCurve {
        let mut by_x: BTreeMap<i64, (f64, Vec<f64>)> = BTreeMap::new();
        for &(x, y) in runs.iter().flatten() {
            // Epochs are whole numbers; the key only has to group equal ones.
            by_x.entry((x * 1000.0).round() as i64).or_insert((x, Vec::new())).1.push(y);
        }
        let points =
            by_x.into_values().filter_map(|(x, ys)| crate::seeds::Spread::of(&ys).map(|s| (x, s.mean, s.sd))).collect();
        BandCurve { name: name.to_string(), points }
    }
}

impl NamedCurve {
    /// `(wall time, headline metric)` curves of comparison rows.
    pub fn headline_curves(results: &[StrategyResult]) -> Vec<NamedCurve> {
        results
            .iter()
            .map(|r| NamedCurve { name: r.strategy.name().to_string(), points: r.headline_curve.clone() })
            .collect()
    }

    /// `(epoch, selected-noise fraction)` from per-epoch detection metrics (epochs without a
    /// selected row are skipped).
    pub fn noise_curve(name: &str, per_epoch: &[NoiseDetection]) -> NamedCurve {
        NamedCurve {
            name: name.to_string(),
            points: per_epoch.iter().filter_map(|d| Some((d.epoch? as f64, d.selected_noise_fraction?))).collect(),
        }
    }
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const CLEAN: RGBColor = COLORS[0];
const NOISY: RGBColor = COLORS[1];

/// Plotters errors are generic over the backend; flatten them to text.
trait PlotErr<T> {
    fn pe(self) -> std::result::Result<T, String>;
}
impl<T, E: std::fmt::Display> PlotErr<T> for std::result::Result<T, E> {
    fn pe(self) -> std::result::Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Axis range around `vals` with 5 % padding; a degenerate range is widened to stay drawable.
fn padded(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        vals.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
    (lo - pad, hi + pad)
}

/// Draws with `$draw(&root, args..)` once on a PNG and once on an SVG backend.
macro_rules! render_both {
    ($stem:expr, $size:expr, $draw:ident($($arg:expr),*)) => {{
        ensure_font()?;
        let files = PlotFiles::for_stem($stem)?;
        // Each file is drawn under a temporary name and renamed when complete.
        let (png, svg) = (temp_path_keeping_extension(&files.png), temp_path_keeping_extension(&files.svg));
        {
            let root = BitMapBackend::new(&png, $size).into_drawing_area();
            $draw(&root, $($arg),*).map_err(EvalError::Plot)?;
            root.present().map_err(|e| EvalError::Plot(e.to_string()))?;
        }
        {
            let root = SVGBackend::new(&svg, $size).into_drawing_area();
            $draw(&root, $($arg),*).map_err(EvalError::Plot)?;
            root.present().map_err(|e| EvalError::Plot(e.to_string()))?;
        }
        commit_file(&png, &files.png)?;
        commit_file(&svg, &files.svg)?;
        Ok(files)
    }};
}

/// (a) CLIPScore of clean vs noisy pairs over epochs: mean line and a shaded 25–75 % band.
pub fn plot_score_trajectories(stem: &Path, t: &ScoreTrajectories, title: &str) -> Result<PlotFiles> {
    if t.clean.is_empty() && t.noisy.is_empty() {
        return Err(EvalError::Empty("no score trajectories to plot"));
    }
    render_both!(stem, (900, 600), draw_trajectories(t, title))
}

/// The frame shared by the full-page plots: title, margins, axes with their descriptions.
fn page_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    (x_desc, y_desc): (&str, &str),
) -> std::result::Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .pe()?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .pe()?;
    Ok(chart)
}

fn draw_trajectories<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    t: &ScoreTrajectories,
    title: &str,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).pe()?;
    let all = || t.clean.iter().chain(&t.noisy);
    let (x0, x1) = padded(all().map(|s| s.epoch as f64));
    let (y0, y1) = padded(all().flat_map(|s| [s.q25, s.q75, s.mean]));
    let mut chart = page_chart(root, title, (x0, x1), (y0, y1), ("epoch", "CLIPScore"))?;
    for (series, color, label) in [(&t.clean, CLEAN, "clean"), (&t.noisy, NOISY, "noisy")] {
        if series.is_empty() {
            continue;
        }
        let band: Vec<(f64, f64)> = series
            .iter()
            .map(|s| (s.epoch as f64, s.q75))
            .chain(series.iter().rev().map(|s| (s.epoch as f64, s.q25)))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.2).filled()))).pe()?;
        chart
            .draw_series(LineSeries::new(series.iter().map(|s| (s.epoch as f64, s.mean)), color.stroke_width(3)))
            .pe()?
            .label(format!("{label} pairs: mean, 25–75 % band"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
        chart.draw_series(series.iter().map(|s| Circle::new((s.epoch as f64, s.mean), 4, color.filled()))).pe()?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .pe()?;
    Ok(())
}

/// (b) One panel per epoch: histogram of the selected set's CLIPScore, clean and noisy
/// stacked when flags are known.
pub fn plot_selected_histograms(stem: &Path, hists: &[EpochHistogram], title: &str) -> Result<PlotFiles> {
    if hists.is_empty() {
        return Err(EvalError::Empty("no histograms to plot"));
    }
    for h in hists {
        let bad_noisy = h.histogram.noisy.as_ref().is_some_and(|n| {
            n.len() != h.histogram.counts.len() || n.iter().zip(&h.histogram.counts).any(|(a, b)| a > b)
        });
        if h.histogram.edges.len() != h.histogram.counts.len() + 1 || h.histogram.counts.is_empty() || bad_noisy {
            return Err(EvalError::Invalid(format!("histogram of epoch {} has inconsistent edges/counts", h.epoch)));
        }
    }
    let cols = (hists.len() as f64).sqrt().ceil() as usize;
    let rows = hists.len().div_ceil(cols);
    let size = (420 * cols as u32 + 40, 320 * rows as u32 + 60);
    render_both!(stem, size, draw_histograms(hists, title, (rows, cols)))
}

fn draw_histograms<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    hists: &[EpochHistogram],
    title: &str,
    grid: (usize, usize),
) -> std::result::Result<(), String> {
    root.fill(&WHITE).pe()?;
    let root = root.titled(title, ("sans-serif", 26)).pe()?;
    let x0 = hists.iter().map(|h| h.histogram.edges[0]).fold(f64::INFINITY, f64::min);
    let x1 = hists.iter().map(|h| h.histogram.edges[h.histogram.edges.len() - 1]).fold(f64::NEG_INFINITY, f64::max);
    let ymax = hists.iter().flat_map(|h| h.histogram.counts.iter()).copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    for (i, (panel, h)) in root.split_evenly(grid).iter().zip(hists).enumerate() {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("epoch {}", h.epoch), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(x0..x1, 0.0..ymax)
            .pe()?;
        chart
            .configure_mesh()
            .x_desc("CLIPScore")
            .y_desc("selected")
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .pe()?;
        let noisy = |b: usize| h.histogram.noisy.as_ref().map_or(0, |n| n[b]) as f64;
        let base_color = if h.histogram.noisy.is_some() { CLEAN } else { RGBColor(110, 110, 110) };
        let lower = chart
            .draw_series((0..h.histogram.counts.len()).map(|b| {
                let clean = h.histogram.counts[b] as f64 - noisy(b);
                Rectangle::new(
                    [(h.histogram.edges[b], 0.0), (h.histogram.edges[b + 1], clean)],
                    base_color.mix(0.8).filled(),
                )
            }))
            .pe()?;
        // One legend is enough: label only the first panel's series.
        if i == 0 {
            lower
                .label(if h.histogram.noisy.is_some() { "clean" } else { "selected" })
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], base_color.filled()));
        }
        if h.histogram.noisy.is_some() {
            let upper = chart
                .draw_series((0..h.histogram.counts.len()).map(|b| {
                    let clean = h.histogram.counts[b] as f64 - noisy(b);
                    Rectangle::new(
                        [(h.histogram.edges[b], clean), (h.histogram.edges[b + 1], h.histogram.counts[b] as f64)],
                        NOISY.mix(0.8).filled(),
                    )
                }))
                .pe()?;
            if i == 0 {
                upper.label("noisy").legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], NOISY.filled()));
            }
        }
        if i == 0 {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .pe()?;
        }
    }
    Ok(())
}

/// (c) The dataset's headline metric (`metric`, e.g. "mean R@1") against wall time, one line
/// per strategy.
pub fn plot_headline_vs_time(stem: &Path, curves: &[NamedCurve], title: &str, metric: &str) -> Result<PlotFiles> {
    check_curves(curves)?;
    let y_label = format!("test {metric} (%)");
    let axes = Axes { title, x: "wall time (s)", y: &y_label, reference: None, y_scale: 1.0 };
    render_both!(stem, (900, 600), draw_lines(curves, &[], &axes))
}

/// (d) Noise fraction of the selected set per epoch, one line per strategy, with the data's
/// noise rate as a dashed reference. Fractions are 0–1 and drawn as percent.
pub fn plot_noise_fraction(
    stem: &Path,
    curves: &[NamedCurve],
    data_noise_rate: Option<f64>,
    title: &str,
) -> Result<PlotFiles> {
    check_curves(curves)?;
    render_both!(
        stem,
        (900, 600),
        draw_lines(
            curves,
            &[],
            &Axes {
                title,
                x: "epoch",
                y: "noisy pairs in selected set (%)",
                reference: data_noise_rate,
                y_scale: 100.0
            }
        )
    )
}

/// (e) Curves over seeds: each strategy's mean per epoch with a shaded ±1 sd band.
/// `y_desc` names the axis, `y_scale` maps data units to it (100 for fractions),
/// `reference` draws a dashed line (the data's noise rate).
pub fn plot_seed_bands(
    stem: &Path,
    bands: &[BandCurve],
    title: &str,
    y_desc: &str,
    (reference, y_scale): (Option<f64>, f64),
) -> Result<PlotFiles> {
    let curves: Vec<NamedCurve> = bands
        .iter()
        .map(|b| NamedCurve {
            name: format!("{} (mean ± sd)", b.name),
            points: b.points.iter().map(|&(x, m, _)| (x, m)).collect(),
        })
        .collect();
    check_curves(&curves)?;
    let axes = Axes { title, x: "epoch", y: y_desc, reference, y_scale };
    render_both!(stem, (900, 600), draw_lines(&curves, bands, &axes))
}

fn check_curves(curves: &[NamedCurve]) -> Result<()> {
    if curves.iter().all(|c| c.points.is_empty()) {
        return Err(EvalError::Empty("no curve points to plot"));
    }
    Ok(())
}

/// Titles and options of a line chart.
struct Axes<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    /// A dashed horizontal reference (the data's noise rate), unscaled.
    reference: Option<f64>,
    /// Factor from data units to drawn units (100 for fractions drawn as percent).
    y_scale: f64,
}

/// Lines, each with its ±sd band when `bands` has one at its index.
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[NamedCurve],
    bands: &[BandCurve],
    axes: &Axes<'_>,
) -> std::result::Result<(), String> {
    let Axes { title, x: x_desc, y: y_desc, reference, y_scale } = *axes;
    root.fill(&WHITE).pe()?;
    let pts = || curves.iter().flat_map(|c| c.points.iter().copied());
    let band_edges = || bands.iter().flat_map(|b| b.points.iter().flat_map(|&(x, m, sd)| [(x, m - sd), (x, m + sd)]));
    let (x0, x1) = padded(pts().map(|p| p.0));
    // Recall and noise fractions are non-negative: anchor the axis at 0, and leave headroom
    // above the data so the legend does not hide the curves.
    let (lo, hi) = padded(pts().chain(band_edges()).map(|p| p.1 * y_scale).chain(reference.map(|r| r * y_scale)));
    let y0 = lo.min(0.0);
    let y1 = hi + 0.3 * (hi - y0);
    let mut chart = page_chart(root, title, (x0, x1), (y0, y1), (x_desc, y_desc))?;
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if let Some(band) = bands.get(i).filter(|b| !b.points.is_empty()) {
            let outline: Vec<(f64, f64)> = band
                .points
                .iter()
                .map(|&(x, m, sd)| (x, (m + sd) * y_scale))
                .chain(band.points.iter().rev().map(|&(x, m, sd)| (x, (m - sd) * y_scale)))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.2).filled()))).pe()?;
        }
        let scaled: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, p.1 * y_scale)).collect();
        chart
            .draw_series(LineSeries::new(scaled.iter().copied(), color.stroke_width(3)))
            .pe()?
            .label(c.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
        chart.draw_series(scaled.iter().map(|&p| Circle::new(p, 3, color.filled()))).pe()?;
    }
    if let Some(r) = reference {
        let y = r * y_scale;
        chart
            .draw_series(DashedLineSeries::new([(x0, y), (x1, y)], 10, 6, BLACK.stroke_width(2)))
            .pe()?
            .label(format!("data noise rate ({y:.0} %)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .pe()?;
    Ok(())
}
