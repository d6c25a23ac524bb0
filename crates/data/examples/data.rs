//! Standalone `dissect data` for use before the main binary is wired:
//! `cargo run -p dissect-data --release --example data -- generate noisy-shapes --out /tmp/ns`.

use clap::Parser;
use dissect_data::cli::{DataCommand, run};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: DataCommand,
}

fn main() -> anyhow::Result<()> {
    run(Cli::parse().cmd)?;
    Ok(())
}
