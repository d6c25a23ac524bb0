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
    for regime in ["cold-start", "warm-start"] {
        let compare = dir.path().join("demo").join(regime);
        for strategy in ["full", "random", "small-loss", "clipscore", "dissect-warmup", "dissect-momentum"] {
            assert!(text.contains(&format!("| {strategy} |")), "table row for {strategy} missing:\n{text}");
            assert!(compare.join(strategy).join("summary.json").is_file(), "{regime}/{strategy} did not finish");
        }
        let table: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(compare.join("table.json")).unwrap()).unwrap();
        assert_eq!(table.as_array().unwrap().len(), 6);
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
        for variant in ["dissect-warmup", "dissect-momentum"] {
            let verdict = format!("- {} start: {variant} ", &regime[..4]);
            assert!(text.contains(&verdict), "no verdict '{verdict}':\n{text}");
        }
    }
    // The warm start continues from the clean model's weights, tokenizer and model config.
    let warm_config = std::fs::read_to_string(dir.path().join("demo/warm-start/full/config.toml")).unwrap();
    assert!(warm_config.contains("clean-model"), "{warm_config}");
    // A second invocation finds every run finished and only rebuilds the report.
    let again = ok(&dissect(&["demo", "--quick", "--out", "demo"], dir.path()));
    assert!(again.contains("| dissect-momentum |") && again.contains("- warm start: dissect-warmup"));

    // `dissect eval` on one of the runs.
    let eval = ok(&dissect(
        &["eval", "demo/cold-start/dissect-warmup", "--data", "demo/data", "--json", "e.json"],
        dir.path(),
    ));
    assert!(eval.contains("image→text") && eval.contains("zero-shot"), "{eval}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("e.json")).unwrap()).unwrap();
    assert_eq!(report["images"], 256);
}

#[test]
fn jpeg_shards_larger_than_the_model_train() {
    // Web datasets store JPEGs larger than the model's input: the loader decodes and resizes them.
    let dir = tempfile::tempdir().unwrap();
    let generate = ["data", "generate", "noisy-shapes", "--out", "ns", "--train-size", "64", "--test-size", "16"];
    let jpeg = [&generate[..], &["--image-size", "40", "--image-format", "jpeg"]].concat();
    ok(&dissect(&jpeg, dir.path()));
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(dir.path().join("ns/train-000000.tar")).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".jpg")) && !names.iter().any(|n| n.ends_with(".png")), "{names:?}");
    let train = ["train", "--data", "ns", "--out", "run", "--model", "micro", "--epochs", "1", "--batch-size", "16"];
    let text = ok(&dissect(&[&train[..], &["--no-progress"]].concat(), dir.path()));
    assert!(text.contains("final test: TR R@1"), "{text}");
    let out = dissect(&[&generate[..], &["--image-format", "tiff"]].concat(), dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--image-format") && err.contains("png or jpeg"), "{err}");
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
    // A launcher's environment named in part, and a world the batch does not split into.
    let train6 = ["train", "--data", "ns", "--out", "run6", "--batch-size", "32"];
    let partial = [("RANK", "0"), ("WORLD_SIZE", "3")];
    let out = Command::new(env!("CARGO_BIN_EXE_dissect")).args(train6).envs(partial).current_dir(dir.path()).output();
    let err = String::from_utf8_lossy(&out.as_ref().unwrap().stderr).into_owned();
    assert!(err.contains("MASTER_ADDR, MASTER_PORT are not") && err.contains("torchrun"), "{err}");
    let whole = [("RANK", "0"), ("WORLD_SIZE", "3"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")];
    let out = Command::new(env!("CARGO_BIN_EXE_dissect")).args(train6).envs(whole).current_dir(dir.path()).output();
    let err = String::from_utf8_lossy(&out.as_ref().unwrap().stderr).into_owned();
    assert!(err.contains("batch_size: 32 does not split into 3 equal slices"), "{err}");
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

fn png(seed: u8) -> Vec<u8> {
    let img = image_rgb(seed);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn image_rgb(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([seed.wrapping_mul(37), (x * 13) as u8, (y * 7 + u32::from(seed)) as u8])
    })
}

/// A user's own data, end to end through the binary: a folder and a CSV with awkward
/// captions (commas, quotes, a newline, non-ASCII) are packed into dataset folders, trained
/// on for two steps, evaluated, curated and exported; the packed shards also train directly
/// as open_clip-style `--train-data`/`--val-data` patterns in a folder whose name has spaces.
#[test]
fn your_own_data_from_folder_and_csv_to_a_curated_subset() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    for class in ["red", "blue"] {
        std::fs::create_dir_all(photos.join(class)).unwrap();
    }
    let mut csv = String::from("caption,image\n");
    for i in 0..40u8 {
        let class = if i % 2 == 0 { "red" } else { "blue" };
        let image = photos.join(class).join(format!("p{i:02}.png"));
        std::fs::write(&image, png(i)).unwrap();
        let caption = match i % 4 {
            0 => format!("a {class} square, number {i}"),
            1 => format!("the \"{class}\" one ({i})"),
            2 => format!("a {class} thing\non two lines {i}"),
            _ => format!("une photo {class} très jolie n°{i}"),
        };
        std::fs::write(image.with_extension("txt"), &caption).unwrap();
        csv.push_str(&format!("\"{}\",photos/{class}/p{i:02}.png\n", caption.replace('"', "\"\"")));
    }
    std::fs::write(photos.join("red/broken.png"), b"not a png").unwrap();
    std::fs::write(photos.join("red/broken.txt"), "a broken image").unwrap();
    std::fs::write(dir.path().join("pairs.csv"), csv).unwrap();
    std::fs::write(dir.path().join("classes.txt"), "red\nblue\n").unwrap();

    let pack = ok(&dissect(
        &[
            "data",
            "pack",
            "photos",
            "--out",
            "mine",
            "--test-size",
            "8",
            "--image-size",
            "16",
            "--classes",
            "classes.txt",
            "--noise-rate",
            "0.25",
            "--shard-size",
            "10",
        ],
        dir.path(),
    ));
    assert!(
        pack.contains("packed 32 training pairs (8 noisy) and 8 held-out pairs") && pack.contains("broken.png"),
        "{pack}"
    );
    let from_csv = ok(&dissect(
        &["data", "pack", "pairs.csv", "--out", "mine-csv", "--test-fraction", "0.2", "--image-size", "16"],
        dir.path(),
    ));
    assert!(from_csv.contains("packed 32 training pairs (0 noisy) and 8 held-out pairs"), "{from_csv}");
    let refused = dissect(&["data", "pack", "pairs.csv", "--out", "mine-csv"], dir.path());
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("already exists"));

    let train = |data: &[&str], out: &str| {
        let mut args =
            vec!["train", "--out", out, "--model", "micro", "--batch-size", "8", "--epochs", "1", "--max-steps", "2"];
        args.extend_from_slice(data);
        args.extend_from_slice(&["--strategy", "dissect-momentum", "--rate", "0.5", "--no-progress"]);
        ok(&dissect(&args, dir.path()))
    };
    train(&["--data", "mine"], "run");
    train(&["--data", "mine-csv"], "run-csv");
    let eval = ok(&dissect(&["eval", "run", "--data", "mine"], dir.path()));
    assert!(eval.contains("8 held-out pairs") && eval.contains("zero-shot top-1"), "classes give zero-shot: {eval}");
    let eval_csv = ok(&dissect(&["eval", "run-csv", "--data", "mine-csv"], dir.path()));
    assert!(eval_csv.contains("image→text") && !eval_csv.contains("zero-shot"), "no classes, no zero-shot: {eval_csv}");

    let curated = ok(&dissect(&["curate", "run", "--keep", "0.5", "--out", "curated"], dir.path()));
    assert!(
        curated.contains("kept 16 of 32 training samples") && curated.contains("noisy pairs (ground truth)"),
        "{curated}"
    );
    train(&["--data", "curated"], "run-curated");
    ok(&dissect(&["scores", "export", "run", "--out", "scores.csv"], dir.path()));
    let scores = std::fs::read_to_string(dir.path().join("scores.csv")).unwrap();
    let mut lines = scores.lines();
    assert_eq!(lines.next(), Some("index,shard,key,clipscore,warm,hist,rank_key,times_selected,last_epoch,noisy"));
    assert_eq!(lines.count(), 32);

    // The same shards as open_clip users name them, from a folder with spaces in its name.
    std::fs::rename(dir.path().join("mine"), dir.path().join("my data")).unwrap();
    let shards = |split: &str| format!("my data/{split}-{{000000..000003}}.tar");
    let (train_shards, val_shards) = (shards("train"), "my data/test-000000.tar".to_string());
    let text = train(&["--train-data", &train_shards, "--val-data", &val_shards, "--image-size", "16"], "run-shards");
    assert!(text.contains("run folder: run-shards"), "{text}");
    let eval = ok(&dissect(&["eval", "run-shards", "--val-data", &val_shards], dir.path()));
    assert!(eval.contains("8 held-out pairs"), "{eval}");
}

/// Warm starts and the open_clip format: a run started with `--init` from another run begins
/// at that run's weights (and tokenizer); `export` writes open_clip's state dict; a run with
/// `--model <open_clip config>.json --init <open_clip weights>.safetensors` begins at exactly
/// the weights open_clip wrote (the committed parity fixture), then trains.
#[test]
fn warm_start_export_and_open_clip_weights() {
    let dir = tempfile::tempdir().unwrap();
    let generate = ["data", "generate", "noisy-shapes", "--out", "ns", "--train-size", "64", "--test-size", "16"];
    ok(&dissect(&generate, dir.path()));
    let common = ["--data", "ns", "--batch-size", "16", "--epochs", "1", "--strategy", "random", "--no-progress"];
    let run = |extra: &[&str]| {
        let mut args = vec!["train"];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        ok(&dissect(&args, dir.path()))
    };
    run(&["--out", "first", "--model", "micro"]);
    run(&["--out", "second", "--init", "first", "--max-steps", "1"]);
    let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert_eq!(read("second/tokenizer.json"), read("first/tokenizer.json"), "the tokenizer comes with the weights");
    ok(&dissect(&["export", "first", "--out", "first-export"], dir.path()));
    ok(&dissect(&["export", "second/checkpoints/step-00000000", "--out", "second-start"], dir.path()));
    assert_eq!(read("second-start/open_clip_model.safetensors"), read("first-export/open_clip_model.safetensors"));
    let config: serde_json::Value = serde_json::from_slice(&read("first-export/open_clip_config.json")).unwrap();
    assert_eq!(config["vision_cfg"]["width"], 64);

    // open_clip's own weights and config.
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/openclip_vit.safetensors");
    let mut weights = dissect_model::TensorFile::read(&fixture).unwrap();
    weights.take_prefix("fixture.");
    let json = weights.metadata["open_clip_config"].clone();
    std::fs::write(dir.path().join("oc.safetensors"), weights.to_bytes().unwrap()).unwrap();
    std::fs::write(dir.path().join("oc.json"), &json).unwrap();
    std::fs::write(dir.path().join("oc.toml"), "vocab_size = 512\n").unwrap();
    run(&[
        "--config",
        "oc.toml",
        "--out",
        "from-open-clip",
        "--model",
        "oc.json",
        "--init",
        "oc.safetensors",
        "--max-steps",
        "2",
    ]);
    ok(&dissect(&["export", "from-open-clip/checkpoints/step-00000000", "--out", "oc-start"], dir.path()));
    let start = dissect_model::TensorFile::read(&dir.path().join("oc-start/open_clip_model.safetensors")).unwrap();
    assert_eq!(start.tensors, weights.tensors, "the run starts at open_clip's weights, bit for bit");

    let wrong =
        dissect(&["train", "--data", "ns", "--out", "bad", "--model", "micro", "--init", "oc.safetensors"], dir.path());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.contains("init") && err.contains("has shape"), "{err}");

    // The same with open_clip's ModifiedResNet: the run starts at its weights and BatchNorm
    // running statistics, and training moves the statistics.
    let fixture = fixture.with_file_name("openclip_resnet.safetensors");
    let mut weights = dissect_model::TensorFile::read(&fixture).unwrap();
    weights.take_prefix("fixture.");
    std::fs::write(dir.path().join("rn.safetensors"), weights.to_bytes().unwrap()).unwrap();
    std::fs::write(dir.path().join("rn.json"), &weights.metadata["open_clip_config"]).unwrap();
    let rn = ["--config", "oc.toml", "--out", "from-rn", "--model", "rn.json", "--init", "rn.safetensors"];
    run(&[&rn[..], &["--max-steps", "2"]].concat());
    ok(&dissect(&["export", "from-rn/checkpoints/step-00000000", "--out", "rn-start"], dir.path()));
    ok(&dissect(&["export", "from-rn", "--out", "rn-end"], dir.path()));
    let exported = |folder: &str| {
        dissect_model::TensorFile::read(&dir.path().join(folder).join("open_clip_model.safetensors")).unwrap()
    };
    assert_eq!(exported("rn-start").tensors, weights.tensors, "the run starts at open_clip's ResNet, bit for bit");
    let stat = "visual.layer1.0.bn1.running_mean";
    assert_ne!(exported("rn-end").tensors[stat], weights.tensors[stat], "training moves the running statistics");

    // The small ResNet preset trains on images of any multiple of 32 pixels.
    let text = run(&["--out", "rn-tiny", "--model", "rn-tiny", "--max-steps", "2"]);
    assert!(text.contains("run folder: rn-tiny"), "{text}");
}

/// `compare --seeds N` runs every strategy with seeds s, s + 1, ... and reports each column
/// as mean ± sd over them, marking strategies within the full run's seed spread.
#[test]
fn compare_with_seeds_reports_mean_and_sd() {
    let dir = tempfile::tempdir().unwrap();
    let generate = ["data", "generate", "noisy-shapes", "--out", "ns", "--train-size", "64", "--test-size", "16"];
    ok(&dissect(&generate, dir.path()));
    let args = [
        "compare",
        "--data",
        "ns",
        "--model",
        "micro",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--strategies",
        "full,random",
        "--seeds",
        "2",
        "--seed",
        "3",
        "--out",
        "cmp",
        "--no-progress",
    ];
    let text = ok(&dissect(&args, dir.path()));
    assert!(text.contains("Mean ± sd over 2 seeds"), "{text}");
    let table = std::fs::read_to_string(dir.path().join("cmp/table.md")).unwrap();
    assert!(table.lines().any(|l| l.starts_with("| full |")) && table.lines().any(|l| l.starts_with("| random |")));
    for run in ["seed-3/full", "seed-3/random", "seed-4/full", "seed-4/random"] {
        assert!(dir.path().join("cmp").join(run).join("summary.json").is_file(), "{run}");
    }
    for plot in ["headline_by_epoch", "selected_noise_by_epoch"] {
        assert!(dir.path().join("cmp/plots").join(format!("{plot}.png")).is_file(), "{plot}");
    }
    let summaries: Vec<dissect_eval::SeedSummary> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cmp/table.json")).unwrap()).unwrap();
    assert_eq!(
        summaries.iter().map(|s| (s.strategy.name(), s.seeds)).collect::<Vec<_>>(),
        [("full", 2), ("random", 2)]
    );
    // The summary is over the per-seed tables, one row each.
    let seed_rows = |seed: u32| -> Vec<dissect_eval::StrategyResult> {
        let path = dir.path().join(format!("cmp/seed-{seed}/table.json"));
        dissect_eval::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let r1: Vec<f64> = [3, 4].iter().map(|&s| seed_rows(s)[0].mean_r1()).collect();
    let full = summaries[0].mean_r1.unwrap();
    assert!((full.mean - (r1[0] + r1[1]) / 2.0).abs() < 1e-9 && full.min == r1[0].min(r1[1]));
    assert!(dissect(&["compare", "--data", "ns", "--seeds", "0"], dir.path()).status.code() == Some(2));
}

/// The awkward-image fixtures (transparency, 16-bit, palette, CMYK, EXIF, animations, 1×1,
/// 2000×1) pack with nothing skipped, `inspect` finds nothing to skip, and a training step
/// runs on them; a held-out split of one picture repeated scores at or below chance.
#[test]
fn awkward_images_pack_inspect_train_and_identical_images_score_below_chance() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/awkward");
    let fixtures = fixtures.to_string_lossy();
    let pack = ok(&dissect(
        &["data", "pack", &fixtures, "--out", "awkward", "--test-size", "4", "--image-size", "16"],
        dir.path(),
    ));
    assert!(pack.contains("(0 skipped)"), "{pack}");
    let inspected = ok(&dissect(&["data", "inspect", "awkward/train-000000.tar", "--image-size", "16"], dir.path()));
    assert!(inspected.contains("corrupt images: 0  missing images: 0"), "{inspected}");
    let train = ok(&dissect(
        &[
            "train",
            "--data",
            "awkward",
            "--out",
            "run",
            "--model",
            "micro",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--strategy",
            "full",
            "--no-progress",
        ],
        dir.path(),
    ));
    assert!(train.contains("run folder: run"), "{train}");

    // Ten pairs with distinct captions and one identical image each.
    let same = dir.path().join("same");
    std::fs::create_dir(&same).unwrap();
    for i in 0..10 {
        std::fs::write(same.join(format!("{i}.png")), png(7)).unwrap();
        std::fs::write(same.join(format!("{i}.txt")), format!("picture number {i}")).unwrap();
    }
    ok(&dissect(&["data", "pack", "same", "--out", "same-data", "--test-size", "8", "--image-size", "16"], dir.path()));
    let inspected = ok(&dissect(&["data", "inspect", "same-data/test-000000.tar", "--image-size", "16"], dir.path()));
    assert!(inspected.contains("identical images at 16 px: 8 in 1 group"), "{inspected}");
    let eval = ok(&dissect(&["eval", "run", "--data", "same-data", "--json", "same.json"], dir.path()));
    assert!(eval.contains("ambiguous for retrieval"), "the ambiguity is reported: {eval}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("same.json")).unwrap()).unwrap();
    let ir_r1 = report["retrieval"]["text_to_image"]["r1"].as_f64().unwrap();
    assert!(ir_r1 <= 100.0 / 8.0, "text→image R@1 {ir_r1} is above chance on identical images");
}

/// An open_clip_train checkpoint (`epoch_1.pt`: `state_dict`, DDP's `module.` names) of a
/// QuickGELU model starts a run at exactly its weights, without Python, and the export says
/// `quick_gelu` so open_clip builds the same model back.
#[test]
fn an_open_clip_train_checkpoint_with_quick_gelu_starts_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let generate = ["data", "generate", "noisy-shapes", "--out", "ns", "--train-size", "64", "--test-size", "16"];
    ok(&dissect(&generate, dir.path()));
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures");
    let mut weights = dissect_model::TensorFile::read(&fixtures.join("openclip_vit_quickgelu.safetensors")).unwrap();
    weights.take_prefix("fixture.");
    std::fs::write(dir.path().join("oc.json"), &weights.metadata["open_clip_config"]).unwrap();
    let checkpoint = fixtures.join("openclip_vit_quickgelu_epoch_1.pt").to_string_lossy().into_owned();
    std::fs::write(dir.path().join("oc.toml"), "vocab_size = 512\n").unwrap();
    let args = [
        "train",
        "--config",
        "oc.toml",
        "--data",
        "ns",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        "run",
        "--model",
        "oc.json",
        "--init",
        &checkpoint,
        "--max-steps",
        "1",
    ];
    ok(&dissect(&args, dir.path()));
    ok(&dissect(&["export", "run/checkpoints/step-00000000", "--out", "start"], dir.path()));
    let start = dissect_model::TensorFile::read(&dir.path().join("start/open_clip_model.safetensors")).unwrap();
    assert_eq!(start.tensors, weights.tensors, "the run starts at the checkpoint's weights, bit for bit");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("start/open_clip_config.json")).unwrap()).unwrap();
    assert_eq!(config["quick_gelu"], true);
}

/// A labelled folder (five classes of plain colours) scored zero-shot at every evaluation of a
/// run and by `dissect eval`, with open_clip's ImageNet templates.
#[test]
fn zero_shot_on_a_labelled_folder() {
    let dir = tempfile::tempdir().unwrap();
    let generate = ["data", "generate", "noisy-shapes", "--out", "ns", "--train-size", "64", "--test-size", "16"];
    ok(&dissect(&generate, dir.path()));
    let colours = [("red", [255, 0, 0]), ("green", [0, 255, 0]), ("blue", [0, 0, 255]), ("white", [255; 3])];
    for (name, rgb) in colours.into_iter().chain([("black", [0; 3])]) {
        let class = dir.path().join("colours").join(name);
        std::fs::create_dir_all(&class).unwrap();
        for i in 0..2 {
            let mut out = std::io::Cursor::new(Vec::new());
            image::RgbImage::from_pixel(12, 12, image::Rgb(rgb)).write_to(&mut out, image::ImageFormat::Png).unwrap();
            std::fs::write(class.join(format!("{i}.png")), out.into_inner()).unwrap();
        }
    }
    let train = ok(&dissect(
        &[
            "train",
            "--data",
            "ns",
            "--out",
            "run",
            "--model",
            "micro",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--strategy",
            "full",
            "--zeroshot-data",
            "colours",
            "--zeroshot-templates",
            "imagenet",
            "--no-progress",
        ],
        dir.path(),
    ));
    assert!(train.contains("zero-shot folder"), "{train}");
    let log = std::fs::read_to_string(dir.path().join("run/log.jsonl")).unwrap();
    let epoch: serde_json::Value = serde_json::from_str(log.lines().next_back().unwrap()).unwrap();
    let folder = &epoch["summary"]["eval"]["zero_shot_folder"];
    assert_eq!((folder["images"].as_u64(), folder["classes"].as_u64()), (Some(10), Some(5)), "{epoch}");
    let eval = ok(&dissect(&["eval", "run", "--data", "ns", "--zeroshot-data", "colours"], dir.path()));
    assert!(eval.contains("zero-shot on colours top-1") && eval.contains("top-5"), "{eval}");
}
