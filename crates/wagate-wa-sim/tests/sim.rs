//! End-to-end tests of the simulator with real whatsapp-rust 0.7 clients.
//!
//! Every wait has a deadline; nothing sleeps to "let things settle".

use std::sync::Once;
use std::time::Duration;

use wagate_wa_sim::{SimClient, Simulator};
use whatsapp_rust::prelude::*;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;

const ONLINE: Duration = Duration::from_secs(15);

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Every anyhow error logged as a warning would otherwise capture a backtrace.
        // SAFETY-free: set before any other thread of this test binary reads the environment.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,whatsapp_rust=error,wacore=error".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

async fn pair_of_clients(
    sim: &Simulator,
) -> (
    SimClient,
    SimClient,
    wagate_wa_sim::Account,
    wagate_wa_sim::Account,
) {
    let alice = sim.create_account("15550000001", "Alice").unwrap();
    let bob = sim.create_account("15550000002", "Bob").unwrap();
    let a = sim.connect(&alice).await.unwrap();
    let b = sim.connect(&bob).await.unwrap();
    a.wait_connected(ONLINE).await.unwrap();
    b.wait_connected(ONLINE).await.unwrap();
    (a, b, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_with_ack_delivery_and_read_receipts() {
    init();
    let sim = Simulator::new();
    let (a, b, _alice, bob) = pair_of_clients(&sim).await;

    let sent = a
        .client()
        .send_text(bob.pn_jid(), "hello from A")
        .await
        .unwrap();
    let id = sent.message_id.clone();

    let ack = a
        .wait_for(ONLINE, |e| match e {
            Event::ServerAck(ack) if ack.id == id => Some(ack.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(ack.error, None);

    let (message, info) = b
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hello from A"))
        .await
        .unwrap();
    assert_eq!(message.text_content(), Some("hello from A"));
    assert_eq!(info.id, id);

    a.wait_for(ONLINE, |e| match e {
        Event::Receipt(r) if r.message_ids.contains(&id) && r.r#type == ReceiptType::Delivered => {
            Some(())
        }
        _ => None,
    })
    .await
    .unwrap();

    b.client()
        .mark_as_read(&info.source.chat, None, &[id.as_str()])
        .await
        .unwrap();
    a.wait_for(ONLINE, |e| match e {
        Event::Receipt(r) if r.message_ids.contains(&id) && r.r#type == ReceiptType::Read => {
            Some(())
        }
        _ => None,
    })
    .await
    .unwrap();
}
