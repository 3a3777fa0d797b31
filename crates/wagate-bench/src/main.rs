//! `wagate-bench`: measures a real `wagate serve` process it starts itself (sandbox
//! engine, SQLite, budgets lifted) over loopback, next to a minimal axum + SQLite
//! baseline in the same run, and runs the crash-under-load test.
//!
//! ```sh
//! cargo build --release -p wagate -p wagate-bench
//! target/release/wagate-bench run            # the benchmark (a few minutes on 2 cores)
//! target/release/wagate-bench crash          # kill -9 under load, then verify
//! ```

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use wagate_bench::{bench, crash};

#[derive(Parser)]
#[command(name = "wagate-bench", about = "Benchmark and crash-test wagate")]
struct Cli {
    /// The wagate binary to run (default: target/release/wagate next to this program).
    #[arg(long, global = true)]
    wagate_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Throughput, latency, end-to-end, webhooks, memory, and the baseline.
    Run(bench::Args),
    /// Under load, kill -9 the server and restart it several times; then prove nothing
    /// accepted was lost or sent twice.
    Crash(crash::Args),
}

fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("wagate")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("target/release/wagate"))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let bin = cli.wagate_bin.unwrap_or_else(default_bin);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run(args) => bench::run(&bin, args).await,
            Command::Crash(args) => crash::run(&bin, args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wagate-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
