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

    std::fs::write(dir.path().join("bad.toml"), "[selection]\nstrategy = \"dissect-momentum\"\nrat = 0.3\n").unwrap();
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

/// Everything of a run's summary but wall-clock times and paths.
fn comparable_summary(run: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        if let Some(map) = v.as_object_mut() {
            map.retain(|k, _| {
                !k.starts_with("time")
                    && k != "train_time_s"
                    && k != "last_checkpoint"
                    && k != "run_dir"
                    && k != "interrupted"
            });
            map.values_mut().for_each(strip);
        } else if let Some(items) = v.as_array_mut() {
            items.iter_mut().for_each(strip);
        }
    }
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    strip(&mut summary);
    summary
}

/// Ctrl-C (SIGINT) in the middle of training: the real binary writes a checkpoint at the next
/// step boundary, says so and exits with status 130; `--resume` then ends exactly where an
/// uninterrupted run ends (same summary, same visit records).
#[test]
fn ctrl_c_checkpoints_and_the_resumed_run_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let generate = ["data", "generate", "noisy-shapes", "--out", "ns", "--train-size", "512", "--test-size", "32"];
    ok(&dissect(&generate, dir.path()));
    let train = |out: &str| -> Vec<String> {
        [
            "train",
            "--data",
            "ns",
            "--out",
            out,
            "--model",
            "micro",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--strategy",
            "dissect-momentum",
            "--no-progress",
        ]
        .map(String::from)
        .to_vec()
    };
    ok(&dissect(&train("straight").iter().map(String::as_str).collect::<Vec<_>>(), dir.path()));

    let child = Command::new(env!("CARGO_BIN_EXE_dissect"))
        .args(train("stopped"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = dir.path().join("stopped/log.jsonl");
    let steps_logged = || std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    let started = std::time::Instant::now();
    while steps_logged() < 3 && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("checkpoint") && stderr.contains("--resume"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stopped/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    assert!(summary["steps"].as_u64().unwrap() < 64, "stopped before the end: {summary}");

    let mut resume = train("stopped");
    resume.push("--resume".into());
    ok(&dissect(&resume.iter().map(String::as_str).collect::<Vec<_>>(), dir.path()));
    assert_eq!(comparable_summary(&dir.path().join("straight")), comparable_summary(&dir.path().join("stopped")));
    let visits = |run: &str| std::fs::read(dir.path().join(run).join("visits.dsv")).unwrap();
    assert_eq!(visits("straight"), visits("stopped"), "visit records byte-identical");
}
