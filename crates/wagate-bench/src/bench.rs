//! The benchmark run: memory per idle device, end to end with webhooks, accepted sends
//! at several concurrency levels, and three baselines at the same levels (the HTTP
//! ceiling, the durable group-commit ceiling, one row per transaction), with wagate's
//! ratio to each.

use crate::load::{self, LevelResult, Target};
use crate::server::{self, Api, Server};
use crate::sink::{self, Sink};
use crate::{baseline, svg};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrency levels (closed-loop clients).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Warm-up per level, seconds (discarded).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Length of one measured run, seconds.
    #[arg(long, default_value_t = 5)]
    run_secs: u64,
    /// Measured runs per level.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Sender devices the load is spread over.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Messages of the end-to-end phase (accept → read, webhooks).
    #[arg(long, default_value_t = 5000)]
    e2e_messages: usize,
    /// Idle device counts for the RSS-per-device measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    idle_devices: Vec<usize>,
    /// `full` or `normal` (wagate and the baseline alike).
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Where to write the JSON results and the SVG chart.
    #[arg(long, default_value = "target/wagate-bench")]
    out_dir: PathBuf,
    /// Skip phases: any of idle,e2e,load,baseline (all three),failover.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Run wagate on PostgreSQL: a server on which the run makes (and drops) a fresh
    /// database, e.g. postgres://postgres@127.0.0.1:5432/postgres. Unset: SQLite.
    #[arg(long)]
    database_url: Option<String>,
    /// wagate nodes on that database (a cluster; needs --database-url); the load is
    /// spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// With two nodes or more: kill -9 the node driving a device this many times and
    /// time until a message sent to it from another node is taken by WhatsApp.
    #[arg(long, default_value_t = 10)]
    failover_kills: usize,
}

fn server_env(sync: &str) -> Vec<(&'static str, String)> {
    vec![
        ("WAGATE_SYNCHRONOUS", sync.to_owned()),
        ("WAGATE_SANDBOX__LINK_DELAY_MS", "50".into()),
        ("WAGATE_SANDBOX__DELIVERED_DELAY_MS", "10".into()),
        ("WAGATE_SANDBOX__READ_DELAY_MS", "10".into()),
        ("WAGATE_WEBHOOKS__BACKOFF_BASE_MS", "100".into()),
    ]
}

async fn start_server(bin: &Path, dir: &Path, sync: &str) -> anyhow::Result<(Server, Api)> {
    let key = server::create_account(bin, dir)?;
    let env = server_env(sync);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start(bin, dir, server::free_port()?, &env).await?;
    let api = Api::new(&s.base, &key);
    Ok((s, api))
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": (mem_kib as f64 / 1048576.0 * 10.0).round() / 10.0,
        "loadavg_at_start": load.trim(),
    })
}

pub async fn run(bin: &Path, args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out_dir)?;
    let mut results = json!({ "machine": machine(), "synchronous": args.synchronous });
    out!("# wagate-bench\n\nmachine: {}", results["machine"]);
    let skip = |p: &str| args.skip.iter().any(|s| s == p);

    if !skip("idle") {
        results["idle_rss"] = idle_rss(bin, &args).await?;
    }

    let mut cluster = crate::cluster::start(
        bin,
        &server_env(&args.synchronous),
        args.database_url.as_deref(),
        args.nodes,
    )
    .await?;
    results["database"] = json!(cluster.kind());
    out!("\nwagate under test: {}", cluster.kind());
    let api = cluster.api.clone();
    let mut senders = Vec::new();
    for i in 0..args.devices.max(1) {
        senders.push(api.create_device(&format!("load {i}")).await?);
    }
    for uid in &senders {
        api.wait_connected(uid).await?;
    }

    if !skip("e2e") {
        results["end_to_end"] = end_to_end(&api, &args).await?;
    }

    let mut wagate_levels = Vec::new();
    if !skip("load") {
        out!(
            "\n## accepted sends (wagate, synchronous = {})\n",
            args.synchronous
        );
        out!(
            "| clients | sends/s (median of runs) | runs | p50 ms | p99 ms | p99.9 ms | non-2xx |"
        );
        out!("|---:|---:|---|---:|---:|---:|---|");
        let target = Target {
            urls: cluster
                .bases
                .iter()
                .map(|b| format!("{b}/v1/developer/messages/send"))
                .collect(),
            key: Some(api.key.clone()),
            devices: senders.clone(),
        };
        for &c in &args.concurrency {
            let r = load::level(
                &target,
                c,
                secs(args.warmup_secs),
                secs(args.run_secs),
                args.runs,
            )
            .await;
            print_level(&r);
            wagate_levels.push(r);
        }
        // Every accepted send is a committed row: the list's total counts them. Those still
        // `queued` are the backlog the send workers had not caught up with when the load
        // stopped: accepts that outran sending.
        let count = |filter: &'static str| {
            let (api, senders) = (api.clone(), senders.clone());
            async move {
                let mut n = 0u64;
                for uid in &senders {
                    let v = api
                        .ok(
                            reqwest::Method::GET,
                            &format!("/v1/developer/messages?deviceUid={uid}&limit=1{filter}"),
                            None,
                        )
                        .await?;
                    n += v["total"].as_u64().unwrap_or(0);
                }
                anyhow::Ok(n)
            }
        };
        let committed = count("").await?;
        let backlog = count("&status=queued").await?;
        let accepted: u64 = wagate_levels.iter().map(|l| l.accepted).sum();
        out!(
            "\naccepted in measured runs: {accepted}; messages stored on the load devices (warm-ups included): {committed}; still queued when the load stopped: {backlog}"
        );
        results["load"] = levels_json(&wagate_levels);
        results["load_committed_rows"] = json!(committed);
        results["load_backlog_queued"] = json!(backlog);
    }
    let peak = cluster.servers[0].peak_rss_kib();
    out!(
        "\nwagate peak RSS (VmHWM, node 1): {} MiB",
        peak.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
    results["peak_rss_kib"] = json!(peak);
    if cluster.servers.len() > 1 && !skip("failover") && args.failover_kills > 0 {
        out!("\n## failover (kill -9 of the node driving a device, default 15 s lease)\n");
        let times =
            crate::cluster::failover(&mut cluster, &senders[0], args.failover_kills).await?;
        let mut secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        let max = secs.last().copied().unwrap_or(0.0);
        out!(
            "\nfailover over {} kills: median {median:.1} s, min {:.1} s, max {max:.1} s",
            secs.len(),
            secs[0]
        );
        results["failover_secs"] = json!({"each": secs, "median": median, "max": max});
    }
    drop(cluster);

    // The three baselines, same client, body and levels: what the HTTP stack allows, what
    // the machine can durably accept (group commit), and one row per transaction.
    let mut baselines: Vec<(baseline::Kind, Vec<LevelResult>)> = Vec::new();
    if !skip("baseline") {
        for kind in baseline::Kind::ALL {
            let bdir = tempfile::tempdir()?;
            let b = baseline::start(bdir.path(), args.synchronous == "full", kind)?;
            let target = Target {
                urls: vec![format!("http://{}/send", b.addr)],
                key: None,
                devices: senders.clone(),
            };
            out!("\n## baseline: {}\n", kind.title());
            out!(
                "| clients | sends/s (median of runs) | runs | p50 ms | p99 ms | p99.9 ms | non-2xx |"
            );
            out!("|---:|---:|---|---:|---:|---:|---|");
            let mut levels = Vec::new();
            for &c in &args.concurrency {
                let r = load::level(
                    &target,
                    c,
                    secs(args.warmup_secs),
                    secs(args.run_secs),
                    args.runs,
                )
                .await;
                print_level(&r);
                levels.push(r);
            }
            results["baselines"][kind.key()] = levels_json(&levels);
            drop(b);
            baselines.push((kind, levels));
        }
    }

    if !wagate_levels.is_empty() && !baselines.is_empty() {
        let mut header =
            "\n## wagate / each baseline (same run)\n\n| clients | wagate sends/s |".to_owned();
        let mut rule = "|---:|---:|".to_owned();
        for (kind, _) in &baselines {
            header.push_str(&format!(" {} sends/s | wagate ÷ it |", kind.key()));
            rule.push_str("---:|---:|");
        }
        out!("{header}\n{rule}");
        let mut ratios = Vec::new();
        for (i, w) in wagate_levels.iter().enumerate() {
            let mut line = format!("| {} | {:.0} |", w.concurrency, w.median_rate());
            let mut row = json!({"concurrency": w.concurrency});
            for (kind, levels) in &baselines {
                let b = levels[i].median_rate();
                let ratio = w.median_rate() / b.max(1e-9);
                line.push_str(&format!(" {b:.0} | {ratio:.3} |"));
                row[kind.key()] = json!(ratio);
            }
            out!("{line}");
            ratios.push(row);
        }
        let best = |levels: &[LevelResult]| {
            levels
                .iter()
                .map(LevelResult::median_rate)
                .fold(0.0, f64::max)
        };
        let best_w = best(&wagate_levels);
        out!("");
        for (kind, levels) in &baselines {
            let best_b = best(levels);
            let ratio = best_w / best_b.max(1e-9);
            out!(
                "best wagate {best_w:.0}/s vs best {} {best_b:.0}/s: {:.1} %",
                kind.key(),
                ratio * 100.0
            );
            results["best_ratio"][kind.key()] = json!(ratio);
        }
        results["ratios"] = json!(ratios);
        let colors = ["#2ca02c", "#ff7f0e", "#9467bd"];
        let mut series = vec![
            svg::Series {
                name: "wagate sends/s".to_owned(),
                color: "#1f77b4",
                right_axis: false,
                points: wagate_levels
                    .iter()
                    .map(|l| (l.concurrency, l.median_rate()))
                    .collect(),
            },
            svg::Series {
                name: "wagate p99 ms".to_owned(),
                color: "#1f77b4",
                right_axis: true,
                points: wagate_levels
                    .iter()
                    .map(|l| (l.concurrency, l.ms(0.99)))
                    .collect(),
            },
        ];
        for ((kind, levels), color) in baselines.iter().zip(colors) {
            series.push(svg::Series {
                name: format!("{} sends/s", kind.key()),
                color,
                right_axis: false,
                points: levels
                    .iter()
                    .map(|l| (l.concurrency, l.median_rate()))
                    .collect(),
            });
            series.push(svg::Series {
                name: format!("{} p99 ms", kind.key()),
                color,
                right_axis: true,
                points: levels.iter().map(|l| (l.concurrency, l.ms(0.99))).collect(),
            });
        }
        let chart = svg::chart(
            "wagate vs the baselines: accepted sends/s (solid) and p99 ms (dashed)",
            "accepted sends per second",
            "p99 latency (ms)",
            &series,
        );
        let p = args.out_dir.join("throughput.svg");
        std::fs::write(&p, chart)?;
        out!("chart: {}", p.display());
    }
    results["elapsed_secs"] = json!(started.elapsed().as_secs_f64());
    results["loadavg_at_end"] = json!(
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let p = args.out_dir.join("results.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&results)?)?;
    out!(
        "results: {} ({:.0} s in all)",
        p.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn print_level(r: &LevelResult) {
    let runs: Vec<String> = r.runs.iter().map(|x| format!("{x:.0}")).collect();
    out!(
        "| {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:?} |",
        r.concurrency,
        r.median_rate(),
        runs.join(" / "),
        r.ms(0.5),
        r.ms(0.99),
        r.ms(0.999),
        r.failures
    );
}

fn levels_json(levels: &[LevelResult]) -> Value {
    Value::Array(
        levels
            .iter()
            .map(|l| {
                json!({
                    "concurrency": l.concurrency,
                    "sends_per_sec_median": l.median_rate(),
                    "runs": l.runs,
                    "p50_ms": l.ms(0.5), "p99_ms": l.ms(0.99), "p999_ms": l.ms(0.999),
                    "max_ms": l.hist.max() as f64 / 1000.0,
                    "requests": l.hist.len(),
                    "failures": l.failures.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect(),
    )
}

/// RSS per idle sandbox device: a fresh server, RSS with no device, then with n devices
/// linked and idle.
async fn idle_rss(bin: &Path, args: &Args) -> anyhow::Result<Value> {
    out!("\n## RSS per idle sandbox device\n");
    let dir = tempfile::tempdir()?;
    let (server, api) = start_server(bin, dir.path(), &args.synchronous).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = server.rss_kib().context("no /proc RSS for the server")?;
    out!("server with no device: {:.1} MiB\n", base as f64 / 1024.0);
    out!("| devices | RSS MiB | (RSS − empty) / devices KiB |\n|---:|---:|---:|");
    let mut rows = Vec::new();
    let mut uids: Vec<String> = Vec::new();
    for &n in &args.idle_devices {
        while uids.len() < n {
            let batch = (n - uids.len()).min(16);
            let mut tasks = Vec::new();
            for i in 0..batch {
                let api = api.clone();
                let name = format!("idle {}", uids.len() + i);
                tasks.push(tokio::spawn(async move { api.create_device(&name).await }));
            }
            for t in tasks {
                uids.push(t.await??);
            }
        }
        if let Some(last) = uids.last() {
            api.wait_connected(last).await?;
        }
        // Let link tasks finish and allocator caches settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.rss_kib().unwrap_or(0);
        let per = (rss.saturating_sub(base)) as f64 / n.max(1) as f64;
        out!("| {n} | {:.1} | {per:.1} |", rss as f64 / 1024.0);
        rows.push(json!({"devices": n, "rss_kib": rss, "per_device_kib": per}));
    }
    Ok(json!({"empty_rss_kib": base, "rows": rows}))
}

/// The status webhooks every end-to-end message must produce.
const STATUSES: [&str; 3] = ["sent", "delivered", "read"];

/// Accept → read through the sandbox, and webhook deliveries to a local receiver.
async fn end_to_end(api: &Api, args: &Args) -> anyhow::Result<Value> {
    out!("\n## end to end: accept → read, with message.status webhooks\n");
    let sink = Sink::default();
    let addr = sink::start(sink.clone()).await?;
    let url = format!("http://{addr}/hook");
    let mut devices = Vec::new();
    for i in 0..args.devices.max(1) {
        let uid = api.create_device(&format!("e2e {i}")).await?;
        api.wait_connected(&uid).await?;
        api.set_webhook(&uid, &url, &["message.received", "message.status"])
            .await?;
        devices.push(uid);
    }
    let n = args.e2e_messages;
    let accepted: Arc<std::sync::Mutex<Vec<(String, Instant)>>> = Arc::default();
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (api, devices, accepted, next) = (
            api.clone(),
            devices.clone(),
            Arc::clone(&accepted),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = json!({"deviceUid": devices[i % devices.len()], "to": server::random_recipient(), "text": format!("e2e {i}")});
                if let Ok((202, v)) = api.call(reqwest::Method::POST, "/v1/developer/messages/send", Some(&body)).await
                    && let Some(id) = v["data"]["messageId"].as_str()
                {
                    let now = Instant::now();
                    accepted.lock().unwrap_or_else(|p| p.into_inner()).push((id.to_owned(), now));
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let accept_secs = start.elapsed().as_secs_f64();
    let accepted = std::mem::take(&mut *accepted.lock().unwrap_or_else(|p| p.into_inner()));
    out!(
        "accepted {} of {n} in {accept_secs:.1} s ({:.0}/s, 32 clients)",
        accepted.len(),
        accepted.len() as f64 / accept_secs
    );
    // Wait until every accepted message's `sent`, `delivered` and `read` status webhooks
    // arrived (a destination has several requests in flight, so they may arrive in any
    // order).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = {
            let s = sink.lock();
            accepted
                .iter()
                .filter(|(id, _)| {
                    STATUSES
                        .iter()
                        .all(|st| s.statuses.contains_key(&(id.clone(), (*st).to_owned())))
                })
                .count()
        };
        if done == accepted.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A snapshot of what arrived, so the receiver's lock is not held across awaits.
    let s = {
        let g = sink.lock();
        sink::Seen {
            deliveries: g.deliveries,
            events: g.events.clone(),
            statuses: g.statuses.clone(),
            received: g.received.clone(),
            first: g.first,
            last: g.last,
        }
    };
    let mut hist = Histogram::<u64>::new(3)?;
    let mut last_webhook = start;
    let mut complete = 0usize;
    for (id, t) in &accepted {
        if let Some(r) = s.statuses.get(&(id.clone(), "read".to_owned())) {
            let _ = hist.record(r.saturating_duration_since(*t).as_micros().max(1) as u64);
            complete += 1;
        }
        for st in STATUSES {
            if let Some(at) = s.statuses.get(&(id.clone(), st.to_owned())) {
                last_webhook = last_webhook.max(*at);
            }
        }
    }
    let all_three = accepted
        .iter()
        .filter(|(id, _)| {
            STATUSES
                .iter()
                .all(|st| s.statuses.contains_key(&(id.clone(), (*st).to_owned())))
        })
        .count();
    let e2e_secs = last_webhook.duration_since(start).as_secs_f64();
    let webhook_span = match (s.first, s.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    // Messages with every status webhook delivered, per second from the first accept.
    let e2e_rate = all_three as f64 / e2e_secs.max(1e-9);
    let hook_rate = s.events.len() as f64 / webhook_span.max(1e-9);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    out!(
        "read webhook received for {complete} of {} accepted; all of sent/delivered/read for {all_three}",
        accepted.len()
    );
    out!(
        "end to end: {e2e_rate:.0} messages/s with every status webhook delivered (first accept → last webhook: {e2e_secs:.1} s)"
    );
    out!(
        "accept → read webhook: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms (sandbox delays: 10 ms delivered + 10 ms read)",
        ms(0.5),
        ms(0.99),
        ms(0.999)
    );
    out!(
        "webhooks: {} distinct events, {} POSTs, {hook_rate:.0} deliveries/s",
        s.events.len(),
        s.deliveries
    );
    let (events, posts) = (s.events.len(), s.deliveries);
    // Server-side view of the same path for a sample: history timestamps.
    let mut server_hist = Histogram::<u64>::new(3)?;
    for (id, _) in accepted.iter().step_by((accepted.len() / 200).max(1)) {
        let v = api
            .ok(
                reqwest::Method::GET,
                &format!("/v1/developer/messages/{id}"),
                None,
            )
            .await?;
        let at = |st: &str| {
            v["history"].as_array().and_then(|h| {
                h.iter()
                    .find(|e| e["status"] == st)
                    .and_then(|e| e["at"].as_str())
                    .and_then(chrono_ms)
            })
        };
        if let (Some(q), Some(r)) = (at("queued"), at("read")) {
            let _ = server_hist.record((r - q).max(1) as u64);
        }
    }
    out!(
        "accept → read from the status history (sample of {}): p50 {} ms, p99 {} ms",
        server_hist.len(),
        server_hist.value_at_quantile(0.5),
        server_hist.value_at_quantile(0.99)
    );
    Ok(json!({
        "messages": n, "accepted": accepted.len(), "accept_rate": accepted.len() as f64 / accept_secs,
        "read_webhooks": complete, "all_statuses_webhooked": all_three,
        "end_to_end_per_sec": e2e_rate, "end_to_end_secs": e2e_secs,
        "accept_to_read_webhook_ms": {"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999)},
        "accept_to_read_history_ms": {"p50": server_hist.value_at_quantile(0.5), "p99": server_hist.value_at_quantile(0.99), "samples": server_hist.len()},
        "webhook_events": events, "webhook_posts": posts, "webhook_deliveries_per_sec": hook_rate,
    }))
}

/// Milliseconds since the epoch of an RFC 3339 timestamp (`2026-11-21T06:30:00.123Z`),
/// parsed by hand to keep chrono out of the bench.
pub(crate) fn chrono_ms(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = rest.trim_end_matches('Z');
    let time = time.split(['+']).next()?;
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + hh * 3_600_000 + mm * 60_000 + (sec * 1000.0).round() as i64)
}
