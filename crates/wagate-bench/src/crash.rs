//! The crash test: clients send under load while the server is killed with SIGKILL and
//! restarted several times; then the survivors are checked against every reply the
//! clients got.
//!
//! What "exactly once" can be observed as from outside the process (the sandbox network's
//! wire log, `sandbox.wire_log`, keeps every hand-off and every message shown across the
//! kills; what its simulated server owes survives in its journal, as WhatsApp's server
//! state would):
//!
//! - **nothing accepted is lost**: every send that got a 2xx exists afterwards with its
//!   `clientMessageId`, was handed to the engine and acknowledged, and reached its final
//!   status: `read` (the recipient is a sandbox device that reads everything), never stuck
//!   at `sent` or `delivered` because a kill landed between the ack and a receipt, never
//!   `queued` or `failed`;
//! - **never twice**: one message per `clientMessageId` (sends whose reply was lost in a
//!   crash are retried with the same id and must come back `deduplicated` or be new), and
//!   the recipient — a second sandbox device on the same server — holds at most one copy
//!   of each text, under the sender's WhatsApp id: a resend after a crash carries the same
//!   id, which WhatsApp (and the recipient's store) shows once, and a resend under a new
//!   id would show up as a second copy;
//! - every message that was **read** reached the recipient exactly once, and at the wire
//!   every stored message was shown once and never handed over after its ack was committed;
//! - **statuses consistent**: each history only moves forward with non-decreasing times
//!   and ends at the current status;
//! - **webhooks at least once**: every status step in a history and every message the
//!   recipient stored arrived at the local receiver (which outlives the server).

use crate::server::{self, Api, Server};
use crate::sink::{self, Sink};
use anyhow::{Context, bail};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// How many times the server is killed.
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Mean time between kills, ms (each is uniformly random in ±50%).
    #[arg(long, default_value_t = 2000)]
    pub interval_ms: u64,
    /// Concurrent sending clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Sender devices (each has its own in-order send worker); all send to one recipient.
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Pause of each client between two sends, ms (bounds the backlog the workers face).
    #[arg(long, default_value_t = 20)]
    pub pause_ms: u64,
    /// `full` or `normal`.
    #[arg(long, default_value = "full")]
    pub synchronous: String,
    /// How long to wait for statuses and webhooks to settle at the end, seconds.
    #[arg(long, default_value_t = 180)]
    pub settle_secs: u64,
    /// Fewest sends that must get a 2xx between two kills (and after the last one): a
    /// server that refuses or drops everything must not pass by having nothing to check.
    #[arg(long, default_value_t = 5)]
    pub min_accepted_per_round: usize,
    /// A PostgreSQL server: the test runs on a fresh database made there (dropped after)
    /// instead of SQLite in the data directory.
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Clone, Debug)]
enum Outcome {
    Accepted(String),
    /// No reply (the server died mid-request): retried with the same clientMessageId.
    Unknown,
    Refused(u16),
}

const FORWARD: [&str; 5] = ["queued", "sent", "delivered", "read", "played"];

/// Where an accepted text to the sandbox recipient must end: it reads everything.
const FINAL_OK: [&str; 1] = ["read"];

/// A status nothing will move any more (settled, right or wrong).
fn is_final(m: &Value) -> bool {
    ["read", "played", "failed"].contains(&m["status"].as_str().unwrap_or(""))
}

pub async fn run(bin: &Path, args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let db = match &args.database_url {
        Some(url) => Some(
            wagate_wa_storage::testing::database_at(url)
                .await
                .context("no PostgreSQL at --database-url")?,
        ),
        None => None,
    };
    let key = match &db {
        Some(db) => server::create_account_on(bin, &db.url)?,
        None => server::create_account(bin, dir.path())?,
    };
    let mut env = vec![
        ("WAGATE_SYNCHRONOUS", args.synchronous.as_str()),
        ("WAGATE_SANDBOX__LINK_DELAY_MS", "50"),
        // Read comes well after the recipient got the message; the sandbox journals what it
        // owes, so receipts due when a kill lands still come after the restart.
        ("WAGATE_SANDBOX__DELIVERED_DELAY_MS", "100"),
        ("WAGATE_SANDBOX__READ_DELAY_MS", "200"),
        ("WAGATE_SENDING__RETRY_BASE_MS", "100"),
        ("WAGATE_SENDING__RETRY_MAX_MS", "1000"),
        ("WAGATE_SENDING__LEASE_SECS", "5"),
        ("WAGATE_WEBHOOKS__BACKOFF_BASE_MS", "100"),
        // Every hand-off and every message shown, on disk across the kills.
        ("WAGATE_SANDBOX__WIRE_LOG", "true"),
    ];
    if let Some(db) = &db {
        env.push(("WAGATE_DATABASE_URL", db.url.as_str()));
    }
    let mut server = Server::start(bin, dir.path(), server::free_port()?, &env).await?;
    let api = Api::new(&server.base, &key);
    let sink = Sink::default();
    let hook = format!("http://{}/hook", sink::start(sink.clone()).await?);
    let mut senders = Vec::new();
    for i in 0..args.senders.max(1) {
        let a = api.create_device(&format!("crash sender {i}")).await?;
        api.wait_connected(&a).await?;
        api.set_webhook(&a, &hook, &["message.status"]).await?;
        senders.push(a);
    }
    let b = api.create_device("crash recipient").await?;
    let b_phone = api.wait_connected(&b).await?;
    api.set_webhook(&b, &hook, &["message.received"]).await?;

    let outcomes: Arc<Mutex<BTreeMap<usize, Outcome>>> = Arc::default();
    // The round (number of kills so far) each send was made in.
    let round = Arc::new(AtomicUsize::new(0));
    let rounds: Arc<Mutex<BTreeMap<usize, usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..args.clients.max(1) {
        let (api, senders, to) = (api.clone(), senders.clone(), b_phone.clone());
        let pause = Duration::from_millis(args.pause_ms);
        let (outcomes, stop, seq) = (Arc::clone(&outcomes), Arc::clone(&stop), Arc::clone(&seq));
        let (round, rounds) = (Arc::clone(&round), Arc::clone(&rounds));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                rounds
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(n, round.load(Ordering::SeqCst));
                let o = send(&api, &senders[n % senders.len()], &to, n).await;
                let failed = !matches!(o, Outcome::Accepted(_));
                outcomes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(n, o);
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                } else if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for k in 0..args.kills {
        let ms = rand::thread_rng().gen_range(args.interval_ms / 2..=args.interval_ms * 3 / 2);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.kill9()?;
        round.fetch_add(1, Ordering::SeqCst);
        let n = outcomes.lock().unwrap_or_else(|p| p.into_inner()).len();
        out!(
            "kill -9 #{} after {ms} ms ({n} sends attempted so far)",
            k + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.restart().await.context("restarting after kill -9")?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|p| p.into_inner()));
    let rounds = std::mem::take(&mut *rounds.lock().unwrap_or_else(|p| p.into_inner()));
    // Judged on the first replies, before the unanswered sends are retried.
    let mut problems: Vec<String> = refusal_problems(&outcomes);
    problems.extend(round_problems(
        &outcomes,
        &rounds,
        args.kills + 1,
        args.min_accepted_per_round,
    ));

    // Sends whose reply was lost: the same clientMessageId again.
    let (mut dedup_hits, mut fresh) = (0, 0);
    for (n, o) in outcomes.iter_mut() {
        if matches!(o, Outcome::Unknown) {
            let (status, v) = post(&api, &senders[*n % senders.len()], &b_phone, *n).await?;
            if !(200..300).contains(&status) {
                bail!("retry of crash-{n} got {status}: {v}");
            }
            if v["data"]["deduplicated"] == true {
                dedup_hits += 1;
            } else {
                fresh += 1;
            }
            *o = Outcome::Accepted(
                v["data"]["messageId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    let accepted: HashMap<String, usize> = outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Accepted(id) => Some((id.clone(), *n)),
            _ => None,
        })
        .collect();
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for o in outcomes.values() {
        if let Outcome::Refused(s) = o {
            *refused.entry(*s).or_default() += 1;
        }
    }
    out!(
        "{} sends: {} accepted; {} had no reply (retried: {dedup_hits} were already accepted, {fresh} were not); refused by status: {refused:?}",
        outcomes.len(),
        accepted.len(),
        dedup_hits + fresh
    );

    // Settle: nothing queued, then webhooks caught up.
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let (messages, inbound) = loop {
        let mut messages = Vec::new();
        for a in &senders {
            messages.extend(
                api.list_all(&format!("/v1/developer/messages?deviceUid={a}"))
                    .await?,
            );
        }
        let inbound = api
            .list_all(&format!("/v1/developer/inbound?deviceUid={b}"))
            .await?;
        let pending = messages.iter().filter(|m| m["status"] == "queued").count();
        let unfinished = messages.iter().filter(|m| !is_final(m)).count();
        let missing_hooks = missing_webhooks(&sink, &messages, &inbound).len();
        if (pending == 0 && unfinished == 0 && missing_hooks == 0) || Instant::now() > deadline {
            break (messages, inbound);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Full histories (the list has none), then wait for any webhook still missing.
    let mut messages = with_histories(&api, messages).await?;
    loop {
        if missing_webhooks(&sink, &messages, &inbound).is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        messages = with_histories(&api, messages).await?;
    }

    let by_id: HashMap<&str, &Value> = messages
        .iter()
        .filter_map(|m| Some((m["messageId"].as_str()?, m)))
        .collect();
    // Nothing accepted lost; handed and acknowledged.
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for (id, n) in &accepted {
        match by_id.get(id.as_str()) {
            None => problems.push(format!("accepted {id} (crash-{n}) is missing")),
            Some(m) => {
                let st = m["status"].as_str().unwrap_or("?");
                *by_status.entry(st.to_owned()).or_default() += 1;
                if !FINAL_OK.contains(&st) {
                    problems.push(format!("accepted {id} ended {st}: {m}"));
                }
                if m["clientMessageId"] != format!("crash-{n}") {
                    problems.push(format!("{id} has clientMessageId {}", m["clientMessageId"]));
                }
            }
        }
    }
    // One message per clientMessageId, none we did not send.
    let mut per_cmid: HashMap<&str, usize> = HashMap::new();
    for m in &messages {
        *per_cmid
            .entry(m["clientMessageId"].as_str().unwrap_or(""))
            .or_default() += 1;
    }
    for (c, k) in &per_cmid {
        if *k > 1 {
            problems.push(format!("clientMessageId {c} stored {k} times"));
        }
        let ours = c
            .strip_prefix("crash-")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| outcomes.contains_key(&n));
        if !ours {
            problems.push(format!("a message nobody sent: clientMessageId {c:?}"));
        }
    }
    let stored_not_acked = messages.len().saturating_sub(accepted.len());
    // Histories.
    for m in &messages {
        if let Some(p) = history_problem(m) {
            problems.push(p);
        }
    }
    // A resend may only follow a hand-off whose ack was never committed; an acknowledged
    // send never fails afterwards (`history_problem` refuses `sent → failed`).
    // The recipient: at most one copy of each text, under the sender's WhatsApp id.
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for i in &inbound {
        *copies.entry(i["text"].as_str().unwrap_or("")).or_default() += 1;
    }
    let mut delivered_once = 0;
    for m in &messages {
        let text = m["text"].as_str().unwrap_or("");
        let k = copies.get(text).copied().unwrap_or(0);
        if k > 1 {
            problems.push(format!("recipient holds {k} copies of {text:?}"));
        }
        if k == 1 {
            delivered_once += 1;
            let pid = inbound
                .iter()
                .find(|i| i["text"] == text)
                .map(|i| i["providerMessageId"].clone());
            if pid != Some(m["providerMessageId"].clone()) {
                problems.push(format!(
                    "{text:?} arrived under {pid:?}, sent as {}",
                    m["providerMessageId"]
                ));
            }
        }
        if m["status"] == "read" && k == 0 {
            problems.push(format!(
                "{} was read but never reached the recipient",
                m["messageId"]
            ));
        }
    }
    // At the wire, which outlives the kills: each stored message shown to the recipient
    // exactly once, and never handed over again after its ack was committed.
    let pids: Vec<String> = messages
        .iter()
        .filter_map(|m| m["providerMessageId"].as_str().map(str::to_owned))
        .collect();
    if pids.len() != messages.len() {
        problems.push(format!(
            "{} of {} messages have no providerMessageId",
            messages.len() - pids.len(),
            messages.len()
        ));
    }
    let wire = crate::inflight::read_wire_log(dir.path())?;
    let handoffs: u32 = wire.values().map(|w| w.handoffs).sum();
    problems.extend(crate::inflight::exactly_once_problems(&pids, &wire));
    out!(
        "wire log: {handoffs} hand-offs of {} WhatsApp ids, each shown once unless listed below",
        wire.len()
    );
    if inbound.len() > messages.len() {
        problems.push(format!(
            "recipient holds {} messages for {} sent",
            inbound.len(),
            messages.len()
        ));
    }
    let missing = missing_webhooks(&sink, &messages, &inbound);
    for w in missing.iter().take(20) {
        problems.push(format!("webhook never delivered: {w}"));
    }
    let (posts, events) = {
        let s = sink.lock();
        (s.deliveries, s.events.len())
    };
    out!(
        "final statuses of accepted sends: {by_status:?}; stored but never acknowledged to a client: {stored_not_acked}"
    );
    out!(
        "recipient holds {} messages, each text once: {delivered_once} of {} sent",
        inbound.len(),
        messages.len()
    );
    out!(
        "webhooks: {events} distinct events in {posts} POSTs (redeliveries: {}), missing: {}",
        posts.saturating_sub(events as u64),
        missing.len()
    );
    out!(
        "{} kills, {:.1} s in all",
        args.kills,
        started.elapsed().as_secs_f64()
    );
    if problems.is_empty() {
        out!(
            "crash test passed: every 2xx survived, nothing was sent twice, statuses consistent, every webhook delivered"
        );
        Ok(())
    } else {
        for p in problems.iter().take(50) {
            out!("PROBLEM: {p}");
        }
        bail!(
            "crash test failed with {} problems (server log: kept in {})",
            problems.len(),
            dir.keep().display()
        )
    }
}

async fn post(api: &Api, device: &str, to: &str, n: usize) -> anyhow::Result<(u16, Value)> {
    let body = json!({
        "deviceUid": device,
        "to": to,
        "text": format!("crash test message {n}"),
        "clientMessageId": format!("crash-{n}"),
    });
    api.call(
        reqwest::Method::POST,
        "/v1/developer/messages/send",
        Some(&body),
    )
    .await
}

async fn send(api: &Api, device: &str, to: &str, n: usize) -> Outcome {
    match post(api, device, to, n).await {
        Ok((status, v)) if (200..300).contains(&status) => match v["data"]["messageId"].as_str() {
            Some(id) => Outcome::Accepted(id.to_owned()),
            None => Outcome::Unknown,
        },
        Ok((status, _)) => Outcome::Refused(status),
        Err(_) => Outcome::Unknown,
    }
}

/// What is wrong with a message's history, if anything: it must exist, name known statuses,
/// move strictly forward with non-decreasing times, never fail once WhatsApp acknowledged
/// the send (`failed` may only follow `queued`), and end at the current status.
fn history_problem(m: &Value) -> Option<String> {
    let id = m["messageId"].as_str().unwrap_or("?");
    let Some(h) = m["history"].as_array() else {
        return Some(format!("{id}: no history"));
    };
    if h.is_empty() {
        return Some(format!("{id}: empty history"));
    }
    let mut last: Option<(usize, &str)> = None;
    let mut last_at = 0i64;
    for e in h {
        let st = e["status"].as_str().unwrap_or("?");
        let rank = if st == "failed" {
            // Only a send WhatsApp never acknowledged can fail.
            match last {
                Some((_, "queued")) => FORWARD.len(),
                Some((_, prev)) => {
                    return Some(format!(
                        "{id}: {prev} → failed after the send was acknowledged: {h:?}"
                    ));
                }
                None => return Some(format!("{id}: history starts failed: {h:?}")),
            }
        } else {
            match FORWARD.iter().position(|s| *s == st) {
                Some(r) => r,
                None => return Some(format!("{id}: unknown status {st}")),
            }
        };
        if last.is_some_and(|(r, _)| rank <= r) {
            return Some(format!("{id}: history goes backwards or repeats: {h:?}"));
        }
        // Compared as instants: RFC 3339 strings with varying fraction digits do not
        // sort as text.
        let Some(at) = e["at"].as_str().and_then(crate::bench::chrono_ms) else {
            return Some(format!("{id}: a step without a time: {h:?}"));
        };
        if at < last_at {
            return Some(format!("{id}: history times go backwards: {h:?}"));
        }
        last = Some((rank, st));
        last_at = at;
    }
    let final_st = h.last().and_then(|e| e["status"].as_str());
    (final_st != m["status"].as_str())
        .then(|| format!("{id}: status {} but history ends {final_st:?}", m["status"]))
}

/// A send refused with a 5xx is the server failing, not a client error: the run fails.
/// (4xx are reported in the summary; none is expected either, but a budget could be.)
fn refusal_problems(outcomes: &BTreeMap<usize, Outcome>) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Refused(s) if *s >= 500 => Some(format!("crash-{n} was refused with {s}")),
            _ => None,
        })
        .collect()
}

/// Every round (the time before the first kill, between two kills, after the last) must
/// have had at least `min` sends accepted at once: otherwise the kills hit a server that
/// was not taking work, and "nothing accepted was lost" proves nothing.
fn round_problems(
    outcomes: &BTreeMap<usize, Outcome>,
    rounds: &BTreeMap<usize, usize>,
    round_count: usize,
    min: usize,
) -> Vec<String> {
    let mut accepted = vec![0usize; round_count];
    for (n, o) in outcomes {
        if let (Outcome::Accepted(_), Some(r)) = (o, rounds.get(n))
            && let Some(a) = accepted.get_mut(*r)
        {
            *a += 1;
        }
    }
    accepted
        .iter()
        .enumerate()
        .filter(|(_, a)| **a < min)
        .map(|(r, a)| format!("round {r} had {a} accepted sends, fewer than {min}"))
        .collect()
}

/// Every status step (after queued) of the sender's messages and every message the
/// recipient stored, as a webhook the receiver has not seen.
fn missing_webhooks(sink: &Sink, messages: &[Value], inbound: &[Value]) -> Vec<String> {
    let s = sink.lock();
    let mut missing = Vec::new();
    for m in messages {
        let id = m["messageId"].as_str().unwrap_or("");
        let steps: Vec<String> = match m["history"].as_array() {
            Some(h) => h
                .iter()
                .filter_map(|e| e["status"].as_str().map(str::to_owned))
                .collect(),
            None => vec![m["status"].as_str().unwrap_or("").to_owned()],
        };
        for st in steps.iter().filter(|s| *s != "queued") {
            if !s.statuses.contains_key(&(id.to_owned(), st.clone())) {
                missing.push(format!("message.status {st} of {id}"));
            }
        }
    }
    for i in inbound {
        let p = i["providerMessageId"].as_str().unwrap_or("");
        if !s.received.contains(p) {
            missing.push(format!("message.received {p}"));
        }
    }
    missing
}

/// Each message again from `GET /v1/developer/messages/{id}`, which carries the history.
async fn with_histories(api: &Api, messages: Vec<Value>) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(32) {
        let mut tasks = Vec::new();
        for m in chunk {
            let id = m["messageId"].as_str().unwrap_or("").to_owned();
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                api.ok(
                    reqwest::Method::GET,
                    &format!("/v1/developer/messages/{id}"),
                    None,
                )
                .await
            }));
        }
        for t in tasks {
            out.push(t.await??);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(status: &str, steps: &[&str]) -> Value {
        let history: Vec<Value> = steps
            .iter()
            .enumerate()
            .map(|(i, st)| json!({ "status": st, "at": format!("2026-01-01T00:00:0{i}Z") }))
            .collect();
        json!({ "messageId": "msg_1", "status": status, "history": history })
    }

    #[test]
    fn a_forward_history_passes() {
        assert_eq!(
            history_problem(&message("read", &["queued", "sent", "delivered", "read"])),
            None
        );
        assert_eq!(
            history_problem(&message("failed", &["queued", "failed"])),
            None
        );
    }

    #[test]
    fn an_acknowledged_send_that_fails_is_a_problem() {
        for steps in [
            &["queued", "sent", "failed"][..],
            &["queued", "sent", "delivered", "failed"],
            &["queued", "sent", "delivered", "read", "failed"],
        ] {
            let p = history_problem(&message("failed", steps));
            assert!(
                p.as_deref().is_some_and(|p| p.contains("→ failed")),
                "{steps:?}: {p:?}"
            );
        }
    }

    #[test]
    fn a_missing_empty_backwards_or_untimed_history_is_a_problem() {
        let mut no_history = message("read", &[]);
        no_history.as_object_mut().unwrap().remove("history");
        assert!(history_problem(&no_history).is_some());
        assert!(history_problem(&message("read", &[])).is_some());
        assert!(history_problem(&message("sent", &["queued", "delivered", "sent"])).is_some());
        assert!(history_problem(&message("sent", &["queued", "sent", "sent"])).is_some());
        assert!(history_problem(&message("read", &["queued", "sent"])).is_some());
        let mut untimed = message("sent", &["queued", "sent"]);
        untimed["history"][1]["at"] = Value::Null;
        assert!(history_problem(&untimed).is_some());
    }

    #[test]
    fn a_5xx_refusal_fails_the_run_and_a_4xx_does_not() {
        let outcomes = BTreeMap::from([
            (0, Outcome::Accepted("msg_a".into())),
            (1, Outcome::Refused(503)),
            (2, Outcome::Refused(429)),
            (3, Outcome::Unknown),
            (4, Outcome::Refused(500)),
        ]);
        assert_eq!(
            refusal_problems(&outcomes),
            [
                "crash-1 was refused with 503",
                "crash-4 was refused with 500"
            ]
        );
    }

    #[test]
    fn a_round_with_too_few_accepted_sends_fails_the_run() {
        let outcomes = BTreeMap::from([
            (0, Outcome::Accepted("a".into())),
            (1, Outcome::Accepted("b".into())),
            (2, Outcome::Refused(503)),
            (3, Outcome::Accepted("c".into())),
            (4, Outcome::Unknown),
        ]);
        let rounds = BTreeMap::from([(0, 0), (1, 0), (2, 1), (3, 2), (4, 1)]);
        assert_eq!(
            round_problems(&outcomes, &rounds, 3, 1),
            ["round 1 had 0 accepted sends, fewer than 1"]
        );
        assert_eq!(round_problems(&outcomes, &rounds, 3, 2).len(), 2);
        // A round with no sends at all (the last one was never reached) also fails.
        assert_eq!(round_problems(&outcomes, &rounds, 4, 1).len(), 2);
    }
}
