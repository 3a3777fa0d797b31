//! Which devices this node drives: the lease loop.
//!
//! Every round (a third of the lease) the node heartbeats, renews every lease it holds in
//! one statement, stops any device whose lease it no longer holds, hands back devices
//! beyond its fair share or deleted elsewhere, and takes free devices up to its share
//! ([`wagate_core::lease::plan_leases`] decides; this only carries it out). A lease
//! released by another node wakes the loop at once, so a graceful hand-over takes a
//! moment rather than a round.
//!
//! A node that cannot renew (database unreachable, process paused) stops its devices
//! itself once its own deadline passes — a little before the lease runs out for the
//! others — so two nodes never drive one device for long; and whatever it still tries to
//! write after a takeover is refused by the fence.

use super::{DeviceRuntime, lock};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;
use wagate_core::lease::plan_leases;
use wagate_core::store::StoreError;
use wagate_core::{DeviceUid, time};

impl DeviceRuntime {
    /// One round of the lease loop; see the module docs.
    pub(super) async fn lease_round(self: &Arc<Self>) -> Result<(), StoreError> {
        let _one_at_a_time = self.round_lock.lock().await;
        if self.shutdown.is_cancelled() {
            return Ok(());
        }
        let lease = self.cluster.lease();
        let started = Instant::now();
        let now = time::now();
        let until = now + chrono_of(lease);
        self.store
            .heartbeat_node(&self.node_info(now, false))
            .await?;
        let held = self
            .store
            .renew_device_leases(&self.owner, now, until)
            .await?;
        // Renewed: the leases hold until `until` for everyone else, so this node may drive
        // its devices until a little before that by its own clock.
        *lock(&self.deadline) = Some(started + lease - lease / 5);
        let held: HashMap<DeviceUid, i64> =
            held.into_iter().map(|l| (l.device_uid, l.epoch)).collect();
        for (uid, epoch) in self.running_epochs() {
            if held.get(&uid) != Some(&epoch) {
                tracing::warn!(device.uid = %uid, "this node's lease on the device is gone; stopping it here");
                self.drop_device(&uid, epoch).await;
            }
        }

        let devices = self.store.list_all_devices().await?;
        let leases = self.store.list_device_leases().await?;
        let since = now - chrono_of(lease);
        let live: Vec<String> = self
            .store
            .list_nodes(since)
            .await?
            .into_iter()
            .filter(|n| !n.draining)
            .map(|n| n.node_id)
            .collect();
        let uids: Vec<DeviceUid> = devices.iter().map(|d| d.uid.clone()).collect();
        let wanted: HashSet<&DeviceUid> = uids.iter().collect();
        // Deleted through another node: stop here, free the lease, remove its keys.
        for (uid, _) in self.running_epochs() {
            if !wanted.contains(&uid) {
                self.remove_here(&uid).await;
            }
        }
        let plan = plan_leases(&self.owner, false, &uids, &leases, &live, now, self.seed);
        for uid in &plan.release {
            tracing::info!(device.uid = %uid, "handing the device over to balance the nodes");
            self.stop_here(uid).await;
        }
        // Leases this node holds without running the device were taken by its previous
        // process (same node id), which is gone: take them again, with a new epoch.
        let running: HashSet<DeviceUid> = self.running_epochs().into_keys().collect();
        let mut take: Vec<DeviceUid> = held
            .keys()
            .filter(|u| !running.contains(*u) && !plan.release.contains(u))
            .cloned()
            .collect();
        take.extend(plan.acquire);
        let by_uid: HashMap<&DeviceUid, &wagate_core::device::Device> =
            devices.iter().map(|d| (&d.uid, d)).collect();
        for uid in take {
            let Some(device) = by_uid.get(&uid) else {
                continue;
            };
            let now = time::now();
            // `None`: another node was quicker.
            if let Some(lease) = self
                .store
                .acquire_device_lease(&uid, &self.owner, now, now + chrono_of(lease))
                .await?
                && let Some(fence) = lease.fence()
            {
                self.run_device(device, fence).await;
            }
        }
        // The safety net behind the queued announcements: a worker asleep with nothing
        // planned is woken if its device has a claimable job (accepted through a process
        // whose announcement could not reach this one).
        for uid in self.store.due_devices(&self.owner, time::now()).await? {
            if let Some(r) = lock(&self.devices).get(&uid)
                && r.live.worker_idle.load(std::sync::atomic::Ordering::SeqCst)
            {
                r.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Runs rounds until shutdown: every third of the lease, at once when another node
    /// releases a lease, and stops every device itself if renewals fail past its deadline.
    pub(super) async fn lease_loop(self: Arc<Self>) {
        let mut releases = self.store.subscribe_lease_releases();
        let round = self.cluster.round();
        loop {
            let deadline = *lock(&self.deadline);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(round) => {}
                changed = releases.changed() => {
                    if changed.is_err() {
                        // The store is gone; the timer carries on.
                        releases = self.store.subscribe_lease_releases();
                    }
                }
                _ = sleep_until_opt(deadline) => self.self_fence().await,
            }
            let deadline = *lock(&self.deadline);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                result = tokio::time::timeout(round, self.lease_round()) => match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "device lease round failed"),
                    Err(_) => tracing::warn!("device lease round timed out"),
                },
                _ = sleep_until_opt(deadline) => self.self_fence().await,
            }
        }
    }

    /// The deadline passed without a renewal: another node may take the devices over at
    /// any moment, so stop them all here, writing nothing (the store may be unreachable,
    /// and the leases may no longer be ours).
    async fn self_fence(&self) {
        let running = self.running_epochs();
        if !running.is_empty() {
            tracing::warn!(
                devices = running.len(),
                "device leases could not be renewed in time; stopping every device on this node"
            );
        }
        *lock(&self.deadline) = None;
        for (uid, epoch) in running {
            self.drop_device(&uid, epoch).await;
        }
    }

    fn running_epochs(&self) -> HashMap<DeviceUid, i64> {
        lock(&self.devices)
            .iter()
            .map(|(uid, r)| (uid.clone(), r.fence.epoch))
            .collect()
    }
}

fn chrono_of(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
