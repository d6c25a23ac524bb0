//! The real `dissect` binary, end to end, on tiny data.

use std::path::Path;
use std::process::{Command, Output};

fn dissect(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dissect")).args(args).current_dir(cwd).output().expect("run dissect")
}

fn ok(output: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "dissect failed:\n{text}");
    text
}

#[test]
fn demo_quick_runs_every_strategy_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = ok(&dissect(&["demo", "--quick", "--out", "demo"], dir.path()));
    for strategy in ["full", "random", "small-loss", "big-loss", "clipscore", "dissect-warmup", "dissect-momentum"] {
        assert!(text.contains(&format!("| {strategy} |")), "table row for {strategy} missing:\n{text}");
    }
    let compare = dir.path().join("demo/compare");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(compare.join("table.json")).unwrap()).unwrap();
    assert_eq!(table.as_array().unwrap().len(), 7);
    for plot in [
        "r1_vs_time",
        "selected_noise",
        "clipscore_trajectories_dissect-warmup",
        "selected_histograms_dissect-momentum",
    ] {
        for ext in ["png", "svg"] {
            let path = compare.join("plots").join(format!("{plot}.{ext}"));
            assert!(std::fs::metadata(&path).map(|m| m.len() > 100).unwrap_or(false), "{} missing", path.display());
        }
    }
    // A second invocation finds every run finished and only rebuilds the report.
    let again = ok(&dissect(&["demo", "--quick", "--out", "demo"], dir.path()));
    assert!(again.contains("| dissect-momentum |"));

    // `dissect eval` on one of the runs.
    let eval =
        ok(&dissect(&["eval", "demo/compare/dissect-warmup", "--data", "demo/data", "--json", "e.json"], dir.path()));
    assert!(eval.contains("image→text") && eval.contains("zero-shot"), "{eval}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("e.json")).unwrap()).unwrap();
    assert_eq!(report["images"], 256);
}

#[test]
fn data_generate_train_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    ok(&dissect(
        &[
            "data",
            "generate",
            "noisy-shapes",
            "--out",
            "ns",
            "--noise-rate",
            "0.4",
            "--train-size",
            "128",
            "--test-size",
            "32",
        ],
        dir.path(),
    ));
    let text = ok(&dissect(
        &[
            "train",
            "--data",
            "ns",
            "--out",
            "run",
            "--model",
            "micro",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--strategy",
            "dissect-momentum",
            "--no-progress",
        ],
        dir.path(),
    ));
    assert!(text.contains("final test: TR R@1"), "{text}");
    assert!(dir.path().join("run/visits.dsv").is_file());

    std::fs::write(dir.path().join("bad.toml"), "strategy = \"dissect-momentum\"\nrat = 0.3\n").unwrap();
    let out = dissect(&["train", "--config", "bad.toml", "--out", "run2"], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rat"), "the unknown field is named: {err}");

    let out = dissect(&["train", "--data", "missing", "--out", "run3", "--no-progress"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("dissect data generate"), "{err}");

    // A GPU asked of a CPU-only build, and a wrong option value, are named before any work.
    let out = dissect(&["train", "--data", "ns", "--out", "run4", "--device", "cuda:1"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("device") && err.contains("--features cuda"), "{err}");
    assert!(!dir.path().join("run4").exists(), "nothing written for a refused config");
    let out = dissect(&["train", "--data", "ns", "--out", "run5", "--warmup-rows", "most"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--warmup-rows") && err.contains("random or all"), "{err}");
    let out = dissect(&["train", "--data", "ns", "--out", "run6", "--batch-size", "32", "--ranks", "3"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("ranks: batch_size 32 does not split into 3"), "{err}");
    assert!(!dir.path().join("run6").exists());
}

#[test]
fn simulate_prints_every_score_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let text = ok(&dissect(&["simulate", "--samples", "2048", "--epochs", "4", "--batch-size", "256"], dir.path()));
    for strategy in ["random", "clipscore", "dissect-warmup", "dissect-momentum"] {
        assert!(text.contains(strategy), "{text}");
    }
}
