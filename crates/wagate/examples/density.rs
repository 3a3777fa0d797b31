//! Density of the whatsapp-web engine against the in-process simulator: process RSS per
//! connected, idle device at N devices (protocol state in wagate's SQLite database), and how long
//! a restart takes until every device is connected again.
//!
//! ```sh
//! RUST_LIB_BACKTRACE=0 cargo run -p wagate --features simulator --example density            # 1, 100, 1000
//! RUST_LIB_BACKTRACE=0 cargo run -p wagate --features simulator --example density -- 250     # one size
//! DENSITY_KEY_FILES=1 …   # each device's protocol state in its own SQLite file (before issue 15)
//! ```
//!
//! Each size runs in its own child process, so one size's allocations do not inflate the
//! next. The simulator runs in the same process: its per-device state is included, so the
//! figure is an upper bound for wagate alone.

#![allow(clippy::print_stdout)]

use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wagate::app::{self, AppParts};
use wagate::config::Config;
use wagate::service::accounts;
use wagate::simulator::{self, Simulator};
use wagate_core::DeviceUid;

/// How long the devices sit idle before RSS is read, so start-up buffers and the blocking
/// pool's threads have been released.
const IDLE: Duration = Duration::from_secs(15);
const CONNECT_DEADLINE: Duration = Duration::from_secs(600);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(n) = args.first() {
        let n: usize = n.parse().context("the argument is a device count")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return rt.block_on(measure(n));
    }
    let me = std::env::current_exe()?;
    println!(
        "| devices | RSS before | RSS connected+idle | per device | first connect | reconnect after restart |"
    );
    println!("|---|---|---|---|---|---|");
    for n in [1, 100, 1000] {
        let out = std::process::Command::new(&me)
            .arg(n.to_string())
            .output()?;
        if !out.status.success() {
            anyhow::bail!("size {n} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn wait_all_connected(
    running: &app::RunningApp,
    uids: &[DeviceUid],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let connected = uids
            .iter()
            .filter(|u| running.services.runtime.is_connected(u))
            .count();
        if connected == uids.len() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > CONNECT_DEADLINE {
            anyhow::bail!("only {connected} of {} devices connected", uids.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let sim = Simulator::new();
    // Protocol state in one file per device, as before it moved into the database: the
    // comparison the database was measured against.
    let key_files = std::env::var_os("DENSITY_KEY_FILES").is_some();
    let mut database = wagate::database::open(&config).await?;
    let sqlite = database.sqlite.take();
    if !key_files {
        database.sqlite.clone_from(&sqlite);
    }
    let store = Arc::clone(&database.store);
    let (account, _key) = accounts::create_account(store.as_ref(), "density")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut uids = Vec::with_capacity(n);
    for i in 0..n {
        let uid = simulator::seed_linked_device(
            &database,
            &config,
            &sim,
            &account.id,
            &format!("Shop {i}"),
            &format!("1666{i:07}"),
        )
        .await?;
        uids.push(uid);
    }
    drop(store);
    // The server opens the file again: this handle's writer must be gone first.
    if let Some(sqlite) = &sqlite {
        sqlite.close().await;
    }
    drop(database);

    let start = |config: Config, sim: Simulator| async move {
        let to_sim = simulator::web_tweak(&config, &sim)?;
        let web: app::WebTweak = Box::new(move |c: &mut wagate_engine_web::WebEngineConfig| {
            to_sim(c);
            if key_files {
                c.sqlite = None;
            }
        });
        app::start(
            config,
            AppParts {
                web: Some(web),
                ..AppParts::default()
            },
        )
        .await
    };

    let before = rss_kib();
    let running = start(config.clone(), sim.clone()).await?;
    let first = wait_all_connected(&running, &uids).await?;
    tokio::time::sleep(IDLE).await;
    let after = rss_kib();

    running.shutdown().await;
    let restart_began = Instant::now();
    let running = start(config.clone(), sim.clone()).await?;
    wait_all_connected(&running, &uids).await?;
    let reconnect = restart_began.elapsed();
    running.shutdown().await;

    let per = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "| {n} | {before} KiB | {after} KiB | {per:.0} KiB | {:.1} s | {:.1} s |",
        first.as_secs_f64(),
        reconnect.as_secs_f64()
    );
    Ok(())
}
