//! The conformance suite every implementation of [`wagate_core::store::Store`] must pass,
//! so SQLite today and PostgreSQL later behave the same to the application.
//!
//! Each case is a public async function taking a [`StoreFactory`] that makes a fresh,
//! empty store. An implementing crate runs them all with one line in an integration test:
//!
//! ```ignore
//! wagate_store_tests::store_conformance_tests!(|| async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = MyStore::open(dir.path().join("db")).await.unwrap();
//!     wagate_store_tests::Fixture::with_guard(store, dir)
//! });
//! ```
//!
//! The cases pin what the trait docs say and a few rules the application relies on that
//! the docs leave implicit (listings newest first, `since` inclusive and `until`
//! exclusive, accepting on a deleted device is `NotFound`); each says so where it does.
//! The `Event.seq` contract ([`wagate_core::store`]: strictly increasing in commit
//! order, no seq appearing after a later one was seen, a commit announced only once
//! readable) is pinned by `events_seq_follows_commit_order_under_concurrency` and
//! `a_commit_with_events_wakes_commit_subscribers`; send-job leases shared by several
//! nodes by `a_takeover_frees_the_previous_holders_job_leases` and
//! `release_by_another_owner_leaves_the_lease`; device leases and fencing by the cases of
//! `lease.rs`.
//! Times are fixed, far-future instants a few seconds past a minute boundary, so stores
//! that count budgets in per-minute buckets and stores that count exact rows agree.

// A test suite reports failures by panicking; these lints guard production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account;
mod device;
mod event;
mod fixture;
mod inbound;
mod lease;
mod media;
mod message;
mod queue;
mod session;
mod webhook;

pub use account::*;
pub use device::*;
pub use event::*;
pub use fixture::{Fixture, StoreFactory};
pub use inbound::*;
pub use lease::*;
pub use media::*;
pub use message::*;
pub use queue::*;
pub use session::*;
pub use webhook::*;

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the case with
/// `$factory` (an expression evaluated once per test, e.g. a closure returning a future
/// of [`Fixture`]). The implementing crate needs `tokio` as a dev-dependency.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@cases $factory;
            account_create_get_and_duplicate,
            api_keys_limit_revoke_and_prefix_lookup,
            dashboard_sessions_live_until_ended_or_expired,
            dashboard_sessions_end_with_their_key,
            dashboard_sessions_expired_ones_are_purged,
            device_create_get_and_list,
            device_list_pages,
            device_isolation_between_accounts,
            device_patch_changes_only_given_fields,
            device_soft_delete_hides_it_and_fails_pending_sends,
            device_state_changes_append_events,
            device_instance_credential,
            device_secrets_are_kept_replaced_and_erased,
            device_reads_see_every_write,
            accept_commits_queued_message_job_and_history,
            accept_dedupes_client_message_id_per_device,
            accept_refuses_when_daily_budget_is_used,
            accept_concurrent_duplicates_create_one_message,
            accept_concurrent_sends_respect_the_budget,
            advance_moves_forward_only_with_history_and_events,
            a_sent_message_reported_undeliverable_fails,
            advance_concurrent_steps_apply_in_order,
            advance_to_failed_only_from_queued_and_cancels_the_send,
            advance_by_provider_id_is_scoped_to_the_device,
            list_messages_filters_and_pages,
            details_are_kept_with_outbound_and_inbound_messages,
            claim_honours_run_at_order_and_limit,
            claim_leases_exclude_other_claimers_until_expiry,
            claim_concurrent_claimers_never_share_a_job,
            a_takeover_frees_the_previous_holders_job_leases,
            release_by_another_owner_leaves_the_lease,
            handoff_fail_retry_and_release,
            a_handed_job_waits_for_the_ack_then_is_claimable_again,
            job_ids_are_never_reused,
            next_send_job_at_follows_run_at_and_leases,
            budget_usage_counts_rolling_windows,
            inbound_dedupes_per_device_and_appends_events,
            unread_inbound_per_chat_and_marked_read_once,
            poll_votes_are_found_by_their_poll,
            media_is_isolated_between_accounts,
            events_filter_by_account_type_and_position,
            events_seq_follows_commit_order_under_concurrency,
            a_commit_with_events_wakes_commit_subscribers,
            webhook_fan_out_routes_once_per_event,
            webhook_one_in_flight_per_destination_in_order,
            webhook_window_bounds_in_flight_per_destination,
            webhook_history_filters_and_redeliver,
            webhook_delivery_leases_belong_to_their_owner,
            device_lease_acquire_renew_release,
            nodes_heartbeat_and_leave,
            server_keys_first_stored_wins,
            fenced_writes_are_refused_after_a_takeover,
            receipts_are_committed_without_the_lease,
            due_devices_are_the_owners_with_claimable_jobs,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "wagate_store_tests::__private::tokio"
            )]
            async fn $case() {
                $crate::$case($factory).await;
            }
        )*
    };
}
