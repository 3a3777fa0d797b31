//! Several nodes on one database, in one process: devices spread over the live nodes, each
//! is driven by exactly one node (shown as `node`), any node accepts sends for any device,
//! and a node shutting down hands its devices over at once. The same rules on PostgreSQL,
//! with separate processes killed outright, are the cluster test's (`tests/cluster.rs`).

use crate::support::{TestApp, eventually};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Short leases, so rounds come every few hundred milliseconds.
const LEASE_MS: u64 = 900;

async fn nodes_of(app: &TestApp, uids: &[String]) -> HashMap<String, Option<String>> {
    let mut nodes = HashMap::new();
    for uid in uids {
        let (_, body) = app.get(&format!("/v1/developer/devices/{uid}")).await;
        nodes.insert(
            uid.clone(),
            body["data"]["node"].as_str().map(str::to_owned),
        );
    }
    nodes
}

fn count(nodes: &HashMap<String, Option<String>>, node: &str) -> usize {
    nodes
        .values()
        .filter(|n| n.as_deref() == Some(node))
        .count()
}

#[tokio::test]
async fn devices_spread_over_nodes_any_node_sends_and_a_leaving_node_hands_over() {
    let mut a = TestApp::spawn_with(|c| {
        c.node_id = Some("node-a".into());
        c.cluster.lease_ms = LEASE_MS;
    })
    .await;
    let mut uids = Vec::new();
    for i in 0..4 {
        let d: Value = a.connected_device(&format!("shop {i}")).await;
        assert_eq!(d["node"], "node-a", "the only node drives it: {d}");
        uids.push(d["deviceUid"].as_str().unwrap().to_owned());
    }

    // A second node joins: the first hands back what is beyond its share, the second
    // takes it, and every device is connected again.
    let mut b = a.join_as("node-b").await;
    let spread = eventually("devices spread over two nodes", || async {
        let nodes = nodes_of(&a, &uids).await;
        (count(&nodes, "node-a") == 2 && count(&nodes, "node-b") == 2).then_some(nodes)
    })
    .await;
    for uid in &uids {
        b.wait_device_status(uid, "connected").await;
    }
    // Exactly one node runs each device.
    for (uid, node) in &spread {
        let uid = wagate_core::DeviceUid::parse(uid).unwrap();
        let on_a = a.running().services.runtime.session(&uid).is_some();
        let on_b = b.running().services.runtime.session(&uid).is_some();
        assert_eq!(
            (on_a, on_b),
            (
                node.as_deref() == Some("node-a"),
                node.as_deref() == Some("node-b")
            ),
            "{uid} runs where its lease is"
        );
    }

    // Any node accepts a send for any device; the node driving it sends it.
    let mut sent = Vec::new();
    for (i, uid) in uids.iter().enumerate() {
        let through = if i % 2 == 0 { &a } else { &b };
        let m = through
            .send_text(uid, "+4915112345678", &format!("through either node {i}"))
            .await;
        sent.push(m["messageId"].as_str().unwrap().to_owned());
    }
    for id in &sent {
        a.wait_message_status(id, "read").await;
    }

    // Node A leaves gracefully: node B has every device connected well within a lease.
    let left = Instant::now();
    a.stop().await;
    eventually("node B drives every device", || async {
        let nodes = nodes_of(&b, &uids).await;
        (count(&nodes, "node-b") == uids.len()).then_some(())
    })
    .await;
    for uid in &uids {
        b.wait_device_status(uid, "connected").await;
    }
    let handed_over = left.elapsed();
    assert!(
        handed_over < Duration::from_millis(5 * LEASE_MS),
        "handed over in {handed_over:?}"
    );
    let last = b
        .send_text(&uids[0], "+4915112345678", "after the hand-over")
        .await;
    b.wait_message_status(last["messageId"].as_str().unwrap(), "read")
        .await;
    b.stop().await;
}
