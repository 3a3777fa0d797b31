//! The conformance suite every implementation of [`wagate_core::engine::Engine`] must
//! pass, so the sandbox, whatsapp-web and the Cloud API behave the same to the device
//! runtime: start and link, send → server ack → receipts, number checks, at-least-once
//! receiving, stop and logout, groups. [`graph`] is the fake of Meta's Graph API the Cloud
//! API's tests share.
//!
//! Each case is a public async function taking a [`Harness`]: the engine under test and
//! the world around it (a peer, numbers on and off WhatsApp, linked devices, a restart).
//! The engine's events go to a [`Recorder`], a real in-memory caller. An implementing
//! crate runs every case with one line in an integration test:
//!
//! ```ignore
//! wagate_engine_tests::engine_conformance_tests!(|| async { MyHarness::new().await });
//! ```

// A test suite reports failures by panicking; these lints guard production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;
pub mod graph;
mod harness;
mod recorder;

pub use cases::*;
pub use harness::{Feature, Harness, PeerSaw};
pub use recorder::Recorder;

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the case with the
/// harness `$factory` makes (an expression evaluated once per test, e.g. a closure
/// returning a future of the harness). The implementing crate needs `tokio` as a
/// dev-dependency.
#[macro_export]
macro_rules! engine_conformance_tests {
    ($factory:expr) => {
        $crate::engine_conformance_tests!(@cases $factory;
            start_resumes_a_linked_device_with_its_phone,
            a_new_device_links_then_resumes_without_linking,
            send_is_acked_then_delivered_then_read,
            check_numbers_tells_who_is_on_whatsapp,
            inbound_is_emitted_with_its_sender,
            an_inbound_message_not_committed_is_offered_again,
            stop_ends_the_events_and_what_follows_waits,
            logout_reports_logged_out_once,
            chat_states_reach_the_peer_and_a_stopped_session_refuses_them,
            marking_read_tells_the_sender,
            locations_contacts_polls_and_replies_reach_the_peer,
            reactions_and_edits_reach_the_peer,
            a_reaction_from_the_peer_names_the_device_message,
            the_peers_vote_in_the_devices_poll_is_read_by_option,
            a_group_with_the_peer_gets_messages_both_ways,
            membership_changes_reach_the_members,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "wagate_engine_tests::__private::tokio"
            )]
            async fn $case() {
                let harness = ($factory)().await;
                $crate::$case(&harness).await;
            }
        )*
    };
}
