//! `dissect`: train CLIP-style models faster and more robustly with online sample selection.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod simulate;

#[derive(Parser)]
#[command(name = "dissect", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the selection core on synthetic CLIPScore trajectories and report how much
    /// noise each strategy lets through (no model, no data, seconds).
    Simulate(simulate::SimulateArgs),
    /// Datasets: generate the built-in benchmarks, pack folders into shards, inspect shards.
    Data {
        #[command(subcommand)]
        command: dissect_data::cli::DataCommand,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => simulate::run(&args),
        Command::Data { command } => Ok(dissect_data::cli::run(command)?),
    }
}
