//! Every plot function writes a non-empty PNG and SVG.

use dissect_eval::*;

fn check(files: &PlotFiles) -> anyhow::Result<()> {
    let png = std::fs::read(&files.png)?;
    assert!(png.len() > 1000, "png too small");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(&files.svg)?;
    assert!(svg.contains("<svg"));
    assert!(svg.contains("<text"), "svg has no text");
    Ok(())
}

/// Synthetic records: clean pairs rise fast then drift, noisy pairs creep up.
fn records() -> Vec<(usize, f64, bool)> {
    let mut out = Vec::new();
    for e in 0..6usize {
        for i in 0..50usize {
            let jitter = ((i * 37) % 11) as f64 - 5.0;
            let noisy = i % 5 < 2;
            let base = if noisy { 12.0 + 2.0 * e as f64 } else { 30.0 - 1.0 * e as f64 + 8.0 * (e.min(1) as f64) };
            out.push((e, base + jitter, noisy));
        }
    }
    out
}

#[test]
fn all_plots_write_png_and_svg() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Keep a copy for eyeballing when asked to.
    let out = std::env::var_os("DISSECT_EVAL_PLOT_DIR").map_or_else(|| dir.path().to_path_buf(), Into::into);

    let traj = score_trajectories(records());
    assert_eq!(traj.clean.len(), 6);
    check(&plot_score_trajectories(&out.join("a/trajectories"), &traj, "CLIPScore of clean vs noisy pairs")?)?;

    let hists = selected_histograms(records().into_iter().filter(|r| r.1 > 15.0).map(|r| (r.0, r.1, Some(r.2))), 12)?;
    assert_eq!(hists.len(), 6);
    check(&plot_selected_histograms(&out.join("b/histograms"), &hists, "Selected-set CLIPScore per epoch")?)?;
    let unflagged = selected_histograms(records().into_iter().map(|r| (r.0, r.1, None)), 8)?;
    assert!(unflagged[0].histogram.noisy.is_none());
    check(&plot_selected_histograms(&out.join("b2/histograms"), &unflagged[..1], "one epoch")?)?;

    let curves = vec![
        NamedCurve { name: "full".into(), points: vec![(10.0, 5.0), (20.0, 12.0), (30.0, 18.0)] },
        NamedCurve { name: "dissect-momentum".into(), points: vec![(6.0, 6.0), (12.0, 15.0), (18.0, 21.0)] },
    ];
    check(&plot_headline_vs_time(&out.join("c/r1_vs_time"), &curves, "Test R@1 vs wall time", "mean R@1")?)?;

    let noise = vec![
        NamedCurve { name: "random".into(), points: vec![(0.0, 0.4), (1.0, 0.41), (2.0, 0.39)] },
        NamedCurve { name: "dissect-warmup".into(), points: vec![(0.0, 0.4), (1.0, 0.15), (2.0, 0.08)] },
    ];
    check(&plot_noise_fraction(&out.join("d/noise"), &noise, Some(0.4), "Noise in the selected set")?)?;

    // Over seeds: epoch 0 in two runs (0.4, 0.6), epoch 1 in one (0.5).
    let band = BandCurve::over_seeds("random", &[vec![(0.0, 0.4), (1.0, 0.5)], vec![(0.0, 0.6)]]);
    assert_eq!(band.points.len(), 2);
    let (x, mean, sd) = band.points[0];
    assert!(x == 0.0 && (mean - 0.5).abs() < 1e-12 && (sd - 0.02f64.sqrt()).abs() < 1e-12);
    assert_eq!(band.points[1], (1.0, 0.5, 0.0));
    let bands =
        vec![band, BandCurve::over_seeds("full", &[vec![(0.0, 0.4), (1.0, 0.4)], vec![(0.0, 0.4), (1.0, 0.45)]])];
    check(&plot_seed_bands(&out.join("f/bands"), &bands, "Noise over seeds", "noisy pairs (%)", (Some(0.4), 100.0))?)?;
    assert!(plot_seed_bands(&out.join("g"), &[], "x", "y", (None, 1.0)).is_err());

    // Empty input is an error, not a panic.
    assert!(plot_headline_vs_time(&out.join("e"), &[], "x", "mean R@1").is_err());
    assert!(plot_score_trajectories(&out.join("e"), &ScoreTrajectories::default(), "x").is_err());
    Ok(())
}

#[test]
fn summaries_hand_computed() {
    let s = summarize_scores(3, &[1.0, 2.0, 3.0, 4.0, f64::NAN]).unwrap();
    assert_eq!((s.epoch, s.count, s.mean), (3, 4, 2.5));
    assert!((s.std - 1.25f64.sqrt()).abs() < 1e-12);
    assert_eq!((s.q25, s.median, s.q75), (1.75, 2.5, 3.25));
    assert!(summarize_scores(0, &[]).is_none());
    let h = selected_histograms([(0, 0.0, Some(false)), (0, 10.0, Some(true)), (1, 5.0, Some(false))], 2).unwrap();
    assert_eq!(h[0].histogram.edges, vec![0.0, 5.0, 10.0]);
    assert_eq!(h[0].histogram.counts, vec![1, 1]);
    assert_eq!(h[0].histogram.noisy, Some(vec![0, 1]));
    assert_eq!(h[1].histogram.counts, vec![0, 1]);
}
