//! `dissect`: train CLIP-style models faster and more robustly with online sample selection.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod compare;
mod curate;
mod data;
mod demo;
mod eval;
mod interrupt;
mod job;
mod options;
mod progress;
mod simulate;
mod train;

#[derive(Parser)]
#[command(name = "dissect", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: generate noisy-shapes (40% noisy captions), train the tiny CLIP with
    /// each selection strategy at r = 0.3, print the comparison table and write plots.
    Demo(demo::DemoArgs),
    /// Train one model with one selection strategy.
    Train(train::TrainArgs),
    /// Evaluate a trained run or checkpoint on a dataset's held-out split.
    Eval(eval::EvalArgs),
    /// Train several strategies on one dataset and budget, and compare them.
    Compare(compare::CompareArgs),
    /// Run the selection core on synthetic CLIPScore trajectories and report how much
    /// noise each strategy lets through (no model, no data, seconds).
    Simulate(simulate::SimulateArgs),
    /// Write the samples a finished run ranks best as a new dataset (an offline coreset).
    Curate(curate::CurateArgs),
    /// Write a run's model in open_clip's format (state dict as safetensors + model config).
    Export(curate::ExportArgs),
    /// A finished run's per-sample scores.
    Scores {
        #[command(subcommand)]
        command: curate::ScoresCommand,
    },
    /// Datasets: generate the built-in benchmarks, pack folders into shards, inspect shards.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
}

fn main() -> Result<ExitCode> {
    // A speed setting (13% of a CPU step was page faults without it); nothing to report if refused.
    dissect_model::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Simulate(args) => simulate::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Curate(args) => curate::curate(&args).map(|()| ExitCode::SUCCESS),
        Command::Export(args) => curate::export(&args).map(|()| ExitCode::SUCCESS),
        Command::Scores { command } => curate::scores(&command).map(|()| ExitCode::SUCCESS),
        Command::Data { command } => data::run(command).map(|()| ExitCode::SUCCESS),
    }
}
