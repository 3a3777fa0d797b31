//! Exactly once across a `kill -9` that lands while messages are both queued and in flight.
//!
//! The crash test (`crash.rs`) kills a loaded server at random moments; this one aims the
//! kill. A sender device gets a per-minute budget, so only the first few of a burst are
//! handed to the engine and the rest stay queued; the sandbox's server acks come late
//! (`sandbox.ack_delay_ms`), so what was handed over is still in flight (taken by the
//! simulated server, its ack not yet committed by the gateway). The server is killed with
//! SIGKILL in that window (the sends are paced, so some are still on the wire, the rest
//! taken by the server with their acks on the way back), restarted on the same data directory with the budget lifted,
//! and every message must end `read` having been shown to the recipient exactly once.
//!
//! The counts come from the sandbox's wire log (`sandbox.wire_log`), which outlives the
//! process: every hand-off, every message shown, every committed ack. "Exactly once at the
//! recipient" is one `shown` per WhatsApp id; a resend under the same id after the crash is
//! expected (the gateway never got the ack) and shown once, as WhatsApp does; a hand-off
//! after the gateway committed the ack, or a second `shown`, is a failure.

use crate::server::{self, Api, Server};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The sizes of one run.
#[derive(Clone, Debug)]
pub struct Args {
    /// Messages sent in the burst before the kill.
    pub messages: usize,
    /// The sender's per-minute budget before the kill: how many can be in flight.
    pub minute_limit: u32,
    /// How long the simulated server takes to ack, ms: the in-flight window.
    pub ack_delay_ms: u64,
    /// How long to wait for every message to be read after the restart, seconds.
    pub settle_secs: u64,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            messages: 24,
            minute_limit: 6,
            ack_delay_ms: 2_000,
            settle_secs: 60,
        }
    }
}

/// What the wire log says about one WhatsApp message id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wire {
    pub handoffs: u32,
    pub shown: u32,
    pub acked: bool,
    /// Hand-offs logged after an ack of the same id was committed.
    pub handoffs_after_ack: u32,
}

/// Reads `sandbox/wire.log` of a data directory into per-id counts.
pub fn read_wire_log(data_dir: &Path) -> anyhow::Result<BTreeMap<String, Wire>> {
    let path = data_dir.join("sandbox").join("wire.log");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(parse_wire_log(&text))
}

/// Per-id counts of wire log lines. A torn last line (the kill landed mid-write) is
/// skipped: its record never reached the log.
pub fn parse_wire_log(text: &str) -> BTreeMap<String, Wire> {
    let mut out: BTreeMap<String, Wire> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(pid) = v["pid"].as_str() else {
            continue;
        };
        let w = out.entry(pid.to_owned()).or_default();
        match v["op"].as_str() {
            Some("handoff") => {
                w.handoffs += 1;
                if w.acked {
                    w.handoffs_after_ack += 1;
                }
            }
            Some("shown") => w.shown += 1,
            Some("acked") => w.acked = true,
            _ => {}
        }
    }
    out
}

/// The state of the accepted messages at the kill, as the wire log saw it.
#[derive(Debug, Default)]
pub struct AtKill {
    /// Handed over, the ack not committed: in flight (`on_wire` and `at_server`).
    pub in_flight: BTreeSet<String>,
    /// Handed over, not yet taken by the server: lost with the kill, to be sent again.
    pub on_wire: BTreeSet<String>,
    /// Taken by the server (shown), its ack not committed.
    pub at_server: BTreeSet<String>,
    /// Never handed over: queued.
    pub queued: BTreeSet<String>,
    /// Handed over and acked.
    pub acked: BTreeSet<String>,
}

pub fn at_kill(pids: &[String], wire: &BTreeMap<String, Wire>) -> AtKill {
    let mut s = AtKill::default();
    for pid in pids {
        match wire.get(pid) {
            Some(w) if w.acked => s.acked.insert(pid.clone()),
            Some(w) if w.handoffs > 0 => {
                if w.shown > 0 {
                    s.at_server.insert(pid.clone());
                } else {
                    s.on_wire.insert(pid.clone());
                }
                s.in_flight.insert(pid.clone())
            }
            _ => s.queued.insert(pid.clone()),
        };
    }
    s
}

/// What breaks "exactly once" in the final wire log: an accepted message not shown, or
/// shown more than once, or handed over again after its ack was committed.
pub fn exactly_once_problems(pids: &[String], wire: &BTreeMap<String, Wire>) -> Vec<String> {
    let mut problems = Vec::new();
    for pid in pids {
        let w = wire.get(pid).cloned().unwrap_or_default();
        if w.shown != 1 {
            problems.push(format!("{pid}: shown to the recipient {} times", w.shown));
        }
        if w.handoffs_after_ack > 0 {
            problems.push(format!(
                "{pid}: handed over {} more time(s) after its ack was committed",
                w.handoffs_after_ack
            ));
        }
    }
    // A shown id that no accepted message carries: a resend under a new id.
    let known: BTreeSet<&String> = pids.iter().collect();
    for (pid, w) in wire {
        if w.shown > 0 && !known.contains(pid) {
            problems.push(format!("{pid}: shown but no accepted message has this id"));
        }
    }
    problems
}

/// Runs the scenario against the `wagate` binary at `bin`; returns the state at the kill.
pub async fn run(bin: &Path, args: Args) -> anyhow::Result<AtKill> {
    let dir = tempfile::tempdir()?;
    let key = server::create_account(bin, dir.path())?;
    let ack_delay = args.ack_delay_ms.to_string();
    // Resent only once the ack is surely not coming: well past the ack delay.
    let ack_timeout = (args.ack_delay_ms * 3).to_string();
    let env = [
        ("WAGATE_SANDBOX__LINK_DELAY_MS", "50"),
        ("WAGATE_SANDBOX__DELIVERED_DELAY_MS", "100"),
        ("WAGATE_SANDBOX__READ_DELAY_MS", "200"),
        ("WAGATE_SANDBOX__ACK_DELAY_MS", ack_delay.as_str()),
        ("WAGATE_SANDBOX__WIRE_LOG", "true"),
        ("WAGATE_SENDING__ACK_TIMEOUT_MS", ack_timeout.as_str()),
        ("WAGATE_SENDING__RETRY_BASE_MS", "100"),
        // The default lease (120 s), longer than the settle time: a job claimed at the
        // kill is sent soon after the restart because the node takes back its own leases.
    ];
    let mut server = Server::start(bin, dir.path(), server::free_port()?, &env).await?;
    let api = Api::new(&server.base, &key);
    let device = api.create_device("in-flight sender").await?;
    api.wait_connected(&device).await?;
    set_minute_limit(&api, &device, args.minute_limit).await?;
    let to = server::random_recipient();

    let mut accepted: Vec<(String, String)> = Vec::new(); // (messageId, providerMessageId)
    for n in 0..args.messages {
        let body = json!({
            "deviceUid": device, "to": to,
            "text": format!("in flight {n}"), "clientMessageId": format!("inflight-{n}"),
        });
        let v = api
            .ok(
                reqwest::Method::POST,
                "/v1/developer/messages/send",
                Some(&body),
            )
            .await
            .with_context(|| format!("send {n}"))?;
        let id = v["messageId"].as_str().context("no messageId")?.to_owned();
        let pid = match v["providerMessageId"].as_str() {
            Some(p) => p.to_owned(),
            None => api
                .ok(
                    reqwest::Method::GET,
                    &format!("/v1/developer/messages/{id}"),
                    None,
                )
                .await?["providerMessageId"]
                .as_str()
                .context("no providerMessageId")?
                .to_owned(),
        };
        accepted.push((id, pid));
    }
    let pids: Vec<String> = accepted.iter().map(|(_, p)| p.clone()).collect();

    // Kill once messages are in flight in both halves of the round trip (the budget holds
    // the rest of the burst back): some taken by the server, their acks on the way back,
    // and some still on the wire.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = at_kill(&pids, &read_wire_log(dir.path())?);
        if (!s.on_wire.is_empty() && !s.at_server.is_empty()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9()?;
    let at = at_kill(&pids, &read_wire_log(dir.path())?);
    let leased = leased_jobs(dir.path()).await?;
    out!(
        "kill -9 with {} in flight ({} on the wire, {} taken by the server), {} queued ({leased} claimed under a lease), {} acked",
        at.in_flight.len(),
        at.on_wire.len(),
        at.at_server.len(),
        at.queued.len(),
        at.acked.len()
    );
    if at.on_wire.is_empty() || at.queued.is_empty() {
        bail!(
            "the kill did not land with messages both in flight and queued ({} on the wire, {} queued): the scenario proves nothing",
            at.on_wire.len(),
            at.queued.len()
        );
    }

    server.restart().await.context("restarting after kill -9")?;
    set_minute_limit(&api, &device, 1_000_000).await?;
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let mut unsettled = Vec::new();
    for (id, _) in &accepted {
        loop {
            let m = api
                .ok(
                    reqwest::Method::GET,
                    &format!("/v1/developer/messages/{id}"),
                    None,
                )
                .await?;
            match m["status"].as_str() {
                Some("read") => break,
                Some("failed") => {
                    unsettled.push(format!("{id} failed after the kill: {m}"));
                    break;
                }
                _ if Instant::now() > deadline => {
                    unsettled.push(format!("{id} never read after the kill: {m}"));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let wire = read_wire_log(dir.path())?;
    let mut problems = exactly_once_problems(&pids, &wire);
    problems.extend(unsettled);
    // What was on the wire died with the process: it can only have been read if the
    // gateway handed it over again, under the same id.
    for pid in &at.on_wire {
        if wire.get(pid).is_none_or(|w| w.handoffs < 2) {
            problems.push(format!(
                "{pid}: on the wire at the kill, never handed over again"
            ));
        }
    }
    let resent = at
        .in_flight
        .iter()
        .filter(|p| wire.get(*p).is_some_and(|w| w.handoffs > 1))
        .count();
    out!(
        "after the restart: {} messages read, {resent} of the {} in flight were handed over again under the same id",
        accepted.len(),
        at.in_flight.len()
    );
    if !problems.is_empty() {
        bail!("exactly once broken:\n  {}", problems.join("\n  "));
    }
    Ok(at)
}

/// Send jobs under a lease in the (dead) server's database: claimed, not yet handed over.
async fn leased_jobs(data_dir: &Path) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("wagate.db"))
        .read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&opts).await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM send_jobs WHERE lease_until IS NOT NULL")
        .fetch_one(&mut db)
        .await?;
    db.close().await?;
    Ok(n)
}

async fn set_minute_limit(api: &Api, device: &str, per_minute: u32) -> anyhow::Result<()> {
    let big = 1_000_000_000u32;
    api.ok(
        reqwest::Method::PATCH,
        &format!("/v1/developer/devices/{device}"),
        Some(&json!({
            "safety": {"dailyLimit": big, "hourlyLimit": big, "minuteLimit": per_minute},
            // Spaced hand-offs: at the kill, some are at the server and some on the wire.
            "pacing": {"minDelayMs": 300, "maxDelayMs": 300, "typingIndicator": false}
        })),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"op":"handoff","pid":"A","to":"1"}
{"op":"shown","pid":"A","to":"1"}
{"op":"handoff","pid":"B","to":"1"}
{"op":"acked","pid":"A"}
{"op":"handoff","pid":"A","to":"1"}
{"op":"sho"#;

    #[test]
    fn the_wire_log_counts_handoffs_shows_and_late_resends() {
        let w = parse_wire_log(LOG);
        assert_eq!(
            w["A"],
            Wire {
                handoffs: 2,
                shown: 1,
                acked: true,
                handoffs_after_ack: 1
            }
        );
        assert_eq!(w["B"].handoffs, 1);
        assert!(!w["B"].acked);
        let pids = vec!["A".to_owned(), "B".to_owned(), "C".to_owned()];
        let at = at_kill(&pids, &w);
        assert!(at.acked.contains("A") && at.in_flight.contains("B") && at.queued.contains("C"));
        assert!(at.on_wire.contains("B") && at.at_server.is_empty());
        let problems = exactly_once_problems(&pids, &w);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("A: handed over 1 more"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("B: shown to the recipient 0"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("C: shown to the recipient 0"))
        );
    }

    #[test]
    fn a_message_shown_twice_or_under_an_unknown_id_is_a_problem() {
        let log = "{\"op\":\"shown\",\"pid\":\"A\"}\n{\"op\":\"shown\",\"pid\":\"A\"}\n{\"op\":\"shown\",\"pid\":\"Z\"}\n";
        let w = parse_wire_log(log);
        let problems = exactly_once_problems(&["A".to_owned()], &w);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
