//! The cluster test: three real `wagate serve` processes (the binary this suite built) on
//! one PostgreSQL, their whatsapp-web devices talking to the WhatsApp simulator, which
//! runs in this test and counts what reaches the recipients' phones.
//!
//! It links devices, lets them spread, sends through every node, then: kills a device's
//! node with SIGKILL while every node takes sends back to back, and waits for the device
//! to be online from another node (the README promises 30 s with the default lease);
//! pauses a node with SIGSTOP past its lease and resumes it (it must stop its devices itself, and the devices keep working from their
//! new node, their Signal state intact in PostgreSQL); and stops a node with SIGTERM (its
//! devices must be back online elsewhere within 5 s). Every message accepted along the way
//! must reach its recipient, under one WhatsApp id each, and nothing may reach it under
//! an id the gateway does not know (sent twice); every one must end `read` with a history
//! that only went forward, and its `sent`, `delivered` and `read` webhooks must arrive,
//! although the recipient's delivery receipts are sent while some devices are between
//! nodes (after the kill) and its read receipts while a node sleeps; and the recipient's
//! own messages to every device after all the moves must decrypt and reach the
//! inbox. Number checks through every node for every device, and chat states through every
//! node, show that the calls needing a device's session are forwarded to the node driving
//! it.
//!
//! Needs PostgreSQL (`WAGATE_TEST_DATABASE_URL`, else 127.0.0.1:5432): without one it
//! skips with a notice, except under `CI=true`, where it fails.

// A test reports failures by panicking; these lints guard production code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use wagate_bench::server::{Api, Server, free_port};
use wagate_bench::sink::Sink;
use wagate_engine_web::wagate_wa_storage::testing::pg_database;
use wagate_wa_sim::{Account, ReceiptKind, Simulator};

const DEVICES: usize = 6;
const METRICS_TOKEN: &str = "cluster-test-metrics-token";

struct Node {
    id: String,
    server: Server,
    api: Api,
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A linked device: its uid, the account it is linked to, its companion JID.
struct Device {
    uid: String,
    account: Account,
    jid: wagate_engine_web::whatsapp_rust::Jid,
}

async fn device_view(api: &Api, uid: &str) -> Value {
    api.ok(
        reqwest::Method::GET,
        &format!("/v1/developer/devices/{uid}"),
        None,
    )
    .await
    .unwrap_or(Value::Null)
}

/// The node driving `uid`, as any live node reports it.
async fn node_of(nodes: &[&Node], uid: &str) -> Option<String> {
    for n in nodes {
        let v = device_view(&n.api, uid).await;
        if !v.is_null() {
            return v["node"].as_str().map(str::to_owned);
        }
    }
    None
}

async fn running_on(node: &Node) -> u64 {
    let text = node
        .api
        .client
        .get(format!("{}/metrics", node.api.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .and_then(|r| r.error_for_status());
    let Ok(resp) = text else { return u64::MAX };
    let body = resp.text().await.unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("wagate_devices_running "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// Sends a text through `api` to `to`; returns the message id.
async fn send(api: &Api, uid: &str, to: &Account, text: &str) -> anyhow::Result<String> {
    let v = api
        .ok(
            reqwest::Method::POST,
            "/v1/developer/messages/send",
            Some(&json!({"deviceUid": uid, "to": format!("+{}", to.phone), "text": text})),
        )
        .await?;
    v["messageId"]
        .as_str()
        .map(str::to_owned)
        .context("no messageId")
}

/// The WhatsApp id of each of `ids`, once every one was sent (taken by WhatsApp).
async fn sent_ids(api: &Api, ids: &[String]) -> anyhow::Result<HashMap<String, (String, String)>> {
    let mut out = HashMap::new();
    for id in ids {
        let path = format!("/v1/developer/messages/{id}");
        let waited = until("a message sent", Duration::from_secs(60), || async {
            let v = api.ok(reqwest::Method::GET, &path, None).await.ok()?;
            (v["status"] != "queued").then_some(v)
        })
        .await;
        let m = match waited {
            Ok(m) => m,
            Err(e) => {
                // Say which message and where its device is, to tell a stuck job from a
                // device no node drives.
                let m = api.ok(reqwest::Method::GET, &path, None).await?;
                let uid = m["deviceUid"].as_str().unwrap_or_default();
                let device = device_view(api, uid).await;
                bail!(
                    "{e}: {id} is {m}; its device {uid} is {} on {}",
                    device["status"],
                    device["node"]
                );
            }
        };
        if m["status"] == "failed" {
            bail!("message {id} failed: {m}");
        }
        let provider = m["providerMessageId"]
            .as_str()
            .context("providerMessageId")?;
        let device = m["deviceUid"].as_str().context("deviceUid")?;
        out.insert(id.clone(), (device.to_owned(), provider.to_owned()));
    }
    Ok(out)
}

/// The (message, status) pairs of `sent`, `delivered` and `read` for `accepted` that the
/// webhook receiver has not had.
fn missing_statuses(sink: &Sink, accepted: &[String]) -> Vec<(String, &'static str)> {
    let seen = sink.lock();
    accepted
        .iter()
        .flat_map(|id| ["sent", "delivered", "read"].map(|st| (id.clone(), st)))
        .filter(|(id, st)| !seen.statuses.contains_key(&(id.clone(), (*st).to_owned())))
        .collect()
}

/// The recipient's phone sends a receipt of `kind` for each message in `sent` to the
/// device that sent it.
fn receipts(
    sim: &Simulator,
    recipient: &Account,
    devices: &[Device],
    sent: &HashMap<String, (String, String)>,
    kind: ReceiptKind,
) -> anyhow::Result<()> {
    for d in devices {
        let ids: Vec<&str> = sent
            .values()
            .filter(|(device, _)| *device == d.uid)
            .map(|(_, provider)| provider.as_str())
            .collect();
        sim.phone_send_receipt(recipient, &d.jid, &ids, kind)?;
    }
    Ok(())
}

/// Senders that keep every node busy: one per node, each sending back to back to every
/// device in turn, keeping the ids of the sends answered 2xx.
struct Load {
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<(Vec<String>, Vec<String>)>>,
}

impl Load {
    fn start(nodes: &[Node], devices: &[Device], to: &Account) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let uids: Vec<String> = devices.iter().map(|d| d.uid.clone()).collect();
        let tasks = nodes
            .iter()
            .map(|n| {
                let (api, uids, to, stop) = (n.api.clone(), uids.clone(), to.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut ok, mut errors) = (Vec::new(), Vec::new());
                    for k in 0.. {
                        if stop.is_cancelled() {
                            break;
                        }
                        match send(&api, &uids[k % uids.len()], &to, &format!("load {k}")).await {
                            Ok(id) => ok.push(id),
                            Err(e) => errors.push(format!("{e:#}")),
                        }
                        // Enough to keep every node busy at the kill; more only makes
                        // the run longer on a debug build.
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    (ok, errors)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the senders; the ids accepted. Only the node that was killed (`killed`, an
    /// index of the nodes) may have failed a send.
    async fn stop(self, killed: usize) -> anyhow::Result<Vec<String>> {
        self.stop.cancel();
        let mut accepted = Vec::new();
        for (i, task) in self.tasks.into_iter().enumerate() {
            let (ok, errors) = task.await?;
            if i != killed && !errors.is_empty() {
                bail!("a live node refused sends under load: {errors:?}");
            }
            accepted.extend(ok);
        }
        Ok(accepted)
    }
}

async fn cluster() -> anyhow::Result<()> {
    let Some(db) = pg_database().await else {
        return Ok(());
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_wagate"));
    let sim = Simulator::new();
    let ws_url = sim.listen("127.0.0.1:0").await?;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    // The CLI works on PostgreSQL as on SQLite.
    let out = std::process::Command::new(bin)
        .args([
            "--database-url",
            &db.url,
            "account",
            "create",
            "--name",
            "cluster",
        ])
        .env("RUST_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!("account create: {}", String::from_utf8_lossy(&out.stderr));
    }
    let key = serde_json::from_slice::<Value>(&out.stdout)?["apiKey"]
        .as_str()
        .context("apiKey")?
        .to_owned();

    let start = |i: usize| {
        let (db, ws_url, dir) = (db.url.clone(), ws_url.clone(), dirs[i].path().to_owned());
        let key = key.clone();
        async move {
            let id = format!("node-{}", i + 1);
            let port = free_port()?;
            let env = [
                ("WAGATE_DATABASE_URL", db.as_str()),
                ("WAGATE_NODE_ID", id.as_str()),
                ("WAGATE_WHATSAPP_WEB__WS_URL", ws_url.as_str()),
                ("WAGATE_WHATSAPP_WEB__VERSION", "2.3000.1042742319"),
                ("WAGATE_WHATSAPP_WEB__START_JITTER_MS", "0"),
                ("WAGATE_METRICS__TOKEN", METRICS_TOKEN),
            ];
            let server = Server::start(bin, &dir, port, &env).await?;
            let api = Api::new(&server.base, &key);
            anyhow::Ok(Node { id, server, api })
        }
    };

    // Every node delivers webhooks to one receiver, which counts them by event.
    let sink = Sink::default();
    let hook = format!(
        "http://{}/hook",
        wagate_bench::sink::start(sink.clone()).await?
    );

    // Node 1 alone: the devices are created and linked there.
    let n1 = start(0).await?;
    let recipient = sim.create_account("15557000001", "Recipient")?;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let account = sim.create_account(&format!("1555600000{i}"), &format!("Shop {i}"))?;
        let v = n1
            .api
            .ok(
                reqwest::Method::POST,
                "/v1/developer/devices",
                Some(
                    &json!({"name": format!("shop {i}"), "engine": "whatsapp-web",
                    "pacing": {"minDelayMs": 0, "maxDelayMs": 0, "typingIndicator": false}}),
                ),
            )
            .await?;
        let uid = v["deviceUid"].as_str().context("uid")?.to_owned();
        let qr = until("a QR code", Duration::from_secs(30), || async {
            let v = n1
                .api
                .ok(
                    reqwest::Method::GET,
                    &format!("/v1/developer/devices/{uid}/qr"),
                    None,
                )
                .await
                .ok()?;
            v["qr"].as_str().map(str::to_owned)
        })
        .await?;
        let jid = sim.scan_qr(&account, &qr)?;
        n1.api.wait_connected(&uid).await?;
        n1.api
            .set_webhook(&uid, &hook, &["message.status", "message.received"])
            .await?;
        devices.push(Device { uid, account, jid });
    }

    // Two more nodes join: the devices spread, two per node, each online once.
    let n2 = start(1).await?;
    let n3 = start(2).await?;
    let mut nodes = vec![n1, n2, n3];
    let spread = until("the devices to spread", Duration::from_secs(60), || async {
        let live: Vec<&Node> = nodes.iter().collect();
        let mut per: HashMap<String, usize> = HashMap::new();
        for d in &devices {
            *per.entry(node_of(&live, &d.uid).await?).or_default() += 1;
            if !sim.is_online(&d.jid) {
                return None;
            }
        }
        (per.len() == 3 && per.values().all(|&n| n == DEVICES / 3)).then_some(per)
    })
    .await?;
    eprintln!("spread: {spread:?}");

    // Every node accepts sends for every device.
    let mut accepted: Vec<String> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        for n in &nodes {
            accepted.push(send(&n.api, &d.uid, &recipient, &format!("{i} via {}", n.id)).await?);
        }
    }

    // Calls that need a device's session work from every node: the nodes that do not
    // drive it forward them to the one that does. (A device that just moved is online at
    // WhatsApp's server a few seconds before its client finished its start-up sync and
    // reports itself connected.)
    until(
        "every device connected",
        Duration::from_secs(60),
        || async {
            for d in &devices {
                if device_view(&nodes[0].api, &d.uid).await["status"] != "connected" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    for n in &nodes {
        for d in &devices {
            let body = json!({"deviceUid": d.uid, "numbers": [format!("+{}", recipient.phone)]});
            let checked = until("a number check", Duration::from_secs(15), || async {
                let reply = n
                    .api
                    .ok(
                        reqwest::Method::POST,
                        "/v1/developer/messages/check-whatsapp",
                        Some(&body),
                    )
                    .await;
                reply.ok()
            })
            .await
            .with_context(|| format!("number check for {} through {}", d.uid, n.id))?;
            if checked["results"][0]["onWhatsApp"] != true {
                bail!("number check through {}: {checked}", n.id);
            }
        }
        // A chat state through every node reaches the recipient's chat from the device's
        // node (forwarded like the number check).
        let d = &devices[0];
        n.api
            .ok(
                reqwest::Method::POST,
                "/v1/developer/presence",
                Some(&json!({"deviceUid": d.uid, "to": format!("+{}", recipient.phone), "state": "typing"})),
            )
            .await
            .with_context(|| format!("presence through {}", n.id))?;
        until(
            "the chat showing composing",
            Duration::from_secs(10),
            || async {
                (sim.chat_state_seen(&recipient, &d.account).as_deref() == Some("composing"))
                    .then_some(())
            },
        )
        .await
        .with_context(|| format!("composing through {}", n.id))?;
        n.api
            .ok(
                reqwest::Method::POST,
                "/v1/developer/presence",
                Some(&json!({"deviceUid": d.uid, "to": format!("+{}", recipient.phone), "state": "paused"})),
            )
            .await?;
        until(
            "the chat showing paused",
            Duration::from_secs(10),
            || async {
                (sim.chat_state_seen(&recipient, &d.account).as_deref() == Some("paused"))
                    .then_some(())
            },
        )
        .await
        .with_context(|| format!("paused through {}", n.id))?;
    }

    // The recipient's phone acknowledges what reached it so far, while some of the
    // senders are being moved: every receipt must reach the sender's node of the moment.
    let first_sent = sent_ids(&nodes[0].api, &accepted).await?;

    // SIGKILL the node of device 0: its devices are online from another node within 30 s.
    let live: Vec<&Node> = nodes.iter().collect();
    let victim = node_of(&live, &devices[0].uid).await.context("node of 0")?;
    let vi = nodes.iter().position(|n| n.id == victim).unwrap();
    let mut moved = Vec::new();
    for d in &devices {
        if node_of(&live, &d.uid).await.as_deref() == Some(victim.as_str()) {
            moved.push(d);
        }
    }
    assert!(!moved.is_empty(), "the killed node drove devices");
    // Under load: every node takes sends for every device, back to back, while the node
    // dies; whatever got a 2xx must reach the phone, once.
    let load = Load::start(&nodes, &devices, &recipient);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    nodes[vi].server.kill9()?;
    // Delivered receipts while the killed node's devices have no node: WhatsApp keeps
    // them for the devices' next connection.
    receipts(
        &sim,
        &recipient,
        &devices,
        &first_sent,
        ReceiptKind::Delivered,
    )?;
    let survivors: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != vi)
        .map(|(_, n)| n)
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let under_load = load.stop(vi).await?;
    eprintln!(
        "kill -9 under load: {} sends accepted around the kill",
        under_load.len()
    );
    accepted.extend(under_load);
    // Accepted while the device has no node: sent once it has one again.
    for d in &moved {
        accepted.push(send(&survivors[0].api, &d.uid, &recipient, "while failing over").await?);
    }
    until(
        "failover after kill -9",
        Duration::from_secs(30),
        || async {
            for d in &moved {
                let node = node_of(&survivors, &d.uid).await?;
                if node == victim || !sim.is_online(&d.jid) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    let failover = killed_at.elapsed();
    eprintln!(
        "kill -9: {} devices online on other nodes after {failover:?}",
        moved.len()
    );

    // SIGSTOP a node past its lease (15 s), then SIGCONT: the others take its devices, and
    // it stops them itself, writing nothing.
    let paused_i = (0..3).find(|&i| i != vi).unwrap();
    let paused = nodes[paused_i].id.clone();
    let others: Vec<&Node> = (0..3)
        .filter(|&i| i != vi && i != paused_i)
        .map(|i| &nodes[i])
        .collect();
    let mut paused_devices = Vec::new();
    for d in &devices {
        if node_of(&others, &d.uid).await.as_deref() == Some(paused.as_str()) {
            paused_devices.push(d);
        }
    }
    assert!(!paused_devices.is_empty(), "the paused node drove devices");
    let paused_at = Instant::now();
    signal(nodes[paused_i].server.pid(), "STOP");
    // Read receipts for the first messages, while the node sleeps: those of its devices go
    // onto its connection. Whichever node's client takes them (the paused one, resumed,
    // acknowledges what it reads although its lease is gone), they must be committed.
    receipts(&sim, &recipient, &devices, &first_sent, ReceiptKind::Read)?;
    until(
        "takeover from the paused node",
        Duration::from_secs(40),
        || async {
            for d in &paused_devices {
                let node = node_of(&others, &d.uid).await?;
                if node == paused || !sim.is_online(&d.jid) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    eprintln!(
        "SIGSTOP: {} devices online on other nodes after {:?}",
        paused_devices.len(),
        paused_at.elapsed()
    );
    signal(nodes[paused_i].server.pid(), "CONT");
    until(
        "the resumed node to stop its devices",
        Duration::from_secs(20),
        || async { (running_on(&nodes[paused_i]).await == 0).then_some(()) },
    )
    .await?;
    // The devices it had work from their new node: their Signal state is intact.
    for d in &paused_devices {
        accepted.push(send(&others[0].api, &d.uid, &recipient, "after the pause").await?);
    }

    // SIGTERM the last node that drives devices: handed over within 5 s.
    let leaving = others[0].id.clone();
    let li = nodes.iter().position(|n| n.id == leaving).unwrap();
    let stay: Vec<&Node> = vec![&nodes[paused_i]];
    let mut leaving_devices = Vec::new();
    for d in &devices {
        if node_of(&stay, &d.uid).await.as_deref() == Some(leaving.as_str()) {
            leaving_devices.push(d);
        }
    }
    assert!(
        !leaving_devices.is_empty(),
        "the leaving node drives devices"
    );
    let term_at = Instant::now();
    signal(nodes[li].server.pid(), "TERM");
    until("a graceful hand-over", Duration::from_secs(5), || async {
        for d in &leaving_devices {
            let node = node_of(&stay, &d.uid).await?;
            if node == leaving || !sim.is_online(&d.jid) {
                return None;
            }
        }
        Some(())
    })
    .await?;
    eprintln!("SIGTERM: handed over after {:?}", term_at.elapsed());

    // Every accepted message reaches the recipient's phone, each under its own id.
    let last = &nodes[paused_i].api;
    let all_sent = sent_ids(last, &accepted).await?;
    let provider_ids: HashSet<String> = all_sent.values().map(|(_, p)| p.clone()).collect();
    let inbox: HashSet<String> = sim
        .phone_inbox(&recipient)
        .iter()
        .filter(|n| n.tag == "message")
        .filter_map(|n| n.attrs.get("id").map(|v| v.as_str().to_string()))
        .collect();
    let missing: Vec<&String> = provider_ids.difference(&inbox).collect();
    if !missing.is_empty() {
        bail!(
            "{} accepted messages never reached the phone: {missing:?}",
            missing.len()
        );
    }
    assert_eq!(
        provider_ids.len(),
        accepted.len(),
        "one WhatsApp id per message"
    );
    // Nothing reached the phone twice under two ids: every message the phone has is one
    // the gateway stored (a send cut by the kill is resent under the same id). That
    // includes sends whose 2xx the kill swallowed: stored, so they are sent too.
    let stored: HashSet<String> = last
        .list_all("/v1/developer/messages")
        .await?
        .iter()
        .filter_map(|m| m["providerMessageId"].as_str().map(str::to_owned))
        .collect();
    let strays: Vec<&String> = inbox.difference(&stored).collect();
    if !strays.is_empty() {
        bail!(
            "{} messages reached the phone under an id the gateway does not know (sent twice?): {strays:?}",
            strays.len()
        );
    }

    // Every message's sent, delivered and read reach the webhook receiver, once the phone
    // has acknowledged the later ones too.
    let later_sent: HashMap<String, (String, String)> = all_sent
        .clone()
        .into_iter()
        .filter(|(id, _)| !first_sent.contains_key(id))
        .collect();
    receipts(
        &sim,
        &recipient,
        &devices,
        &later_sent,
        ReceiptKind::Delivered,
    )?;
    receipts(&sim, &recipient, &devices, &later_sent, ReceiptKind::Read)?;
    let all_arrived = until("every status webhook", Duration::from_secs(60), || async {
        missing_statuses(&sink, &accepted).is_empty().then_some(())
    })
    .await;
    if all_arrived.is_err() {
        let absent = missing_statuses(&sink, &accepted);
        // What WhatsApp's server did with the receipts of each: handed to the device's
        // connections (how often), or still queued for it.
        let mut why = Vec::new();
        for (id, status) in &absent {
            let Some((uid, provider)) = all_sent.get(id) else {
                continue;
            };
            let Some(d) = devices.iter().find(|d| d.uid == *uid) else {
                continue;
            };
            let handed = sim
                .delivered(&d.jid)
                .iter()
                .filter(|n| n.tag == "receipt")
                .filter(|n| {
                    n.attrs.get("id").map(|v| v.as_str().to_string()).as_deref()
                        == Some(provider.as_str())
                        || format!("{n:?}").contains(provider.as_str())
                })
                .count();
            let view = device_view(last, uid).await;
            why.push(format!(
                "{id} {status}: device {uid} on {} ({}), its receipts handed {handed} times, {} stanzas queued",
                view["node"],
                view["status"],
                sim.queued(&d.jid)
            ));
        }
        bail!(
            "{} status webhooks never arrived:\n{}",
            absent.len(),
            why.join("\n")
        );
    }

    // Every message ends read, and its history only ever went forward.
    for id in &accepted {
        let m = last
            .ok(
                reqwest::Method::GET,
                &format!("/v1/developer/messages/{id}"),
                None,
            )
            .await?;
        let history: Vec<&str> = m["history"]
            .as_array()
            .context("history")?
            .iter()
            .filter_map(|h| h["status"].as_str())
            .collect();
        let rank = |s: &str| {
            ["queued", "sent", "delivered", "read"]
                .iter()
                .position(|r| *r == s)
        };
        let forward = history
            .windows(2)
            .all(|w| matches!((rank(w[0]), rank(w[1])), (Some(a), Some(b)) if a < b));
        if m["status"] != "read" || !forward {
            bail!(
                "message {id} ended {} with history {history:?}",
                m["status"]
            );
        }
    }

    // Messages to every device after all the moves decrypt on its current node: the
    // Signal sessions moved with the devices, through PostgreSQL.
    let phone = sim.connect_phone(&recipient).await?;
    phone.wait_connected(Duration::from_secs(30)).await?;
    let mut texts = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let text = format!("to shop {i} after the moves");
        phone
            .client()
            .send_text(d.account.pn_jid(), &text)
            .await
            .with_context(|| format!("the phone sends to shop {i}"))?;
        texts.push((d, text));
    }
    for (d, text) in &texts {
        until(
            "the phone's message in the inbox",
            Duration::from_secs(30),
            || async {
                let items = last
                    .list_all(&format!("/v1/developer/inbound?deviceUid={}", d.uid))
                    .await
                    .ok()?;
                items
                    .iter()
                    .any(|m| m["text"].as_str() == Some(text.as_str()))
                    .then_some(())
            },
        )
        .await?;
    }
    phone.shutdown().await;
    eprintln!(
        "{} messages accepted across the failovers, each on the recipient's phone",
        accepted.len()
    );
    assert!(
        failover <= Duration::from_secs(30),
        "failover took {failover:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fail_over_within_30_s_and_deliver_every_message() {
    if let Err(e) = cluster().await {
        panic!("cluster test failed: {e:#}");
    }
}
