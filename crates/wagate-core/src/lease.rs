//! Device leases: which node drives a device, the fencing token its writes carry, and
//! the pure decision of which devices a node takes or hands back.
//!
//! Several nodes share one database, and a WhatsApp device must be driven by exactly one
//! of them (two connections with the same keys replace each other, and the protocol
//! crate's write-behind cache is only safe with one writer). A node holds a device
//! through a lease row: an owner, an expiry it renews, and an epoch that grows on every
//! takeover. Every write a node makes for a device carries the [`Fence`] it got with the
//! lease, and the store refuses it ([`crate::store::StoreError::Fenced`]) once another
//! node has taken the device over, so a node that was paused past its lease (GC, SIGSTOP,
//! a network cut) cannot write over the new owner's state when it wakes up.
//!
//! Leases are rows, not PostgreSQL advisory locks: an advisory lock has no fencing token,
//! is only released when the server notices the connection died, and its holder does not
//! learn it lost it.

use crate::id::DeviceUid;
use crate::time::Timestamp;

/// Who drives a device, since which takeover, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLease {
    pub device_uid: DeviceUid,
    /// The node holding the lease; `None` once released (the epoch stays).
    pub owner: Option<String>,
    /// Grows by one on every acquisition.
    pub epoch: i64,
    /// The lease is void from this instant unless renewed.
    pub expires_at: Timestamp,
}

impl DeviceLease {
    /// Whether `node` holds this lease at `now`.
    pub fn held_by(&self, node: &str, now: Timestamp) -> bool {
        self.owner.as_deref() == Some(node) && self.expires_at > now
    }

    /// Whether some node holds this lease at `now`.
    pub fn is_held(&self, now: Timestamp) -> bool {
        self.owner.is_some() && self.expires_at > now
    }

    /// The token writes for this device carry while this lease is held.
    pub fn fence(&self) -> Option<Fence> {
        self.owner.as_ref().map(|owner| Fence {
            device_uid: self.device_uid.clone(),
            owner: owner.clone(),
            epoch: self.epoch,
        })
    }
}

/// The fencing token of a device write: valid while the device's lease still has this
/// owner and epoch. Expiry alone does not void it (a node whose lease lapsed unnoticed
/// may still write until someone else takes over); a takeover does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub device_uid: DeviceUid,
    pub owner: String,
    pub epoch: i64,
}

/// A node as the others see it: alive while its heartbeat is recent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    pub heartbeat_at: Timestamp,
    /// Shutting down: it takes no devices and hands its own over.
    pub draining: bool,
    /// Where the other nodes reach its HTTP server (`cluster.advertise_url`), to forward
    /// the calls that need a device's live session; `None` when it did not say.
    pub address: Option<String>,
}

/// What a node should do with device leases this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Devices nobody holds, to try to take, in order (another node may win the race).
    pub acquire: Vec<DeviceUid>,
    /// Devices this node holds beyond its fair share, to hand over.
    pub release: Vec<DeviceUid>,
}

/// Decides which devices `me` takes and hands back so devices spread evenly over the live
/// nodes. `devices` are the devices that should run, `leases` their lease rows (a device
/// without one is free), `live` the ids of nodes whose heartbeat is recent and that are
/// not draining (`me` counts as live unless `draining`). A node takes free devices up to
/// its fair share (the device count divided by live nodes, rounded up), and hands back
/// what it holds beyond that share, newest epochs first (the devices it took last).
/// `seed` orders the free devices differently on each node, so nodes starting together
/// try different devices first instead of racing for the same ones.
pub fn plan_leases(
    me: &str,
    draining: bool,
    devices: &[DeviceUid],
    leases: &[DeviceLease],
    live: &[String],
    now: Timestamp,
    seed: u64,
) -> LeasePlan {
    use std::collections::HashMap;
    let by_device: HashMap<&DeviceUid, &DeviceLease> =
        leases.iter().map(|l| (&l.device_uid, l)).collect();
    let mut mine: Vec<&DeviceLease> = Vec::new();
    let mut free: Vec<&DeviceUid> = Vec::new();
    for d in devices {
        match by_device.get(d) {
            Some(l) if l.held_by(me, now) => mine.push(l),
            Some(l) if l.is_held(now) => {}
            _ => free.push(d),
        }
    }
    if draining {
        return LeasePlan {
            acquire: Vec::new(),
            release: mine.iter().map(|l| l.device_uid.clone()).collect(),
        };
    }
    let mut nodes: Vec<&str> = live.iter().map(String::as_str).collect();
    if !nodes.contains(&me) {
        nodes.push(me);
    }
    let share = devices.len().div_ceil(nodes.len().max(1));
    let room = share.saturating_sub(mine.len());
    free.sort_by_key(|d| mix(seed, d.as_str()));
    let acquire = free.into_iter().take(room).cloned().collect();
    let mut release = Vec::new();
    if mine.len() > share {
        mine.sort_by_key(|l| std::cmp::Reverse(l.epoch));
        release = mine[..mine.len() - share]
            .iter()
            .map(|l| l.device_uid.clone())
            .collect();
    }
    LeasePlan { acquire, release }
}

/// A stable per-node shuffle key (FNV-1a of the seed and the id): cheap, deterministic in
/// tests, and different between nodes with different seeds.
fn mix(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn uid(i: usize) -> DeviceUid {
        DeviceUid::parse(&format!("dev_{i:026}")).unwrap()
    }

    fn lease(i: usize, owner: Option<&str>, epoch: i64, expires_ms: i64) -> DeviceLease {
        DeviceLease {
            device_uid: uid(i),
            owner: owner.map(str::to_owned),
            epoch,
            expires_at: crate::time::from_millis(expires_ms),
        }
    }

    fn now() -> Timestamp {
        crate::time::from_millis(1_000_000)
    }

    fn nodes(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_lone_node_takes_every_free_device() {
        let devices: Vec<DeviceUid> = (0..5).map(uid).collect();
        let plan = plan_leases("a", false, &devices, &[], &nodes(&["a"]), now(), 1);
        assert_eq!(plan.acquire.len(), 5);
        assert!(plan.release.is_empty());
    }

    #[test]
    fn nodes_take_up_to_their_share_and_leave_held_leases_alone() {
        let devices: Vec<DeviceUid> = (0..6).map(uid).collect();
        let leases = vec![
            lease(0, Some("b"), 3, 2_000_000),
            lease(1, Some("b"), 1, 2_000_000),
            // Expired: free for anyone.
            lease(2, Some("c"), 7, 999_999),
            // Released.
            lease(3, None, 2, 2_000_000),
        ];
        let plan = plan_leases(
            "a",
            false,
            &devices,
            &leases,
            &nodes(&["a", "b", "c"]),
            now(),
            9,
        );
        assert_eq!(plan.acquire.len(), 2, "a share of 6 over 3 nodes");
        assert!(!plan.acquire.contains(&uid(0)) && !plan.acquire.contains(&uid(1)));
        assert!(plan.release.is_empty());
    }

    #[test]
    fn a_node_over_its_share_hands_back_its_newest_leases() {
        let devices: Vec<DeviceUid> = (0..4).map(uid).collect();
        let leases: Vec<DeviceLease> = (0..4)
            .map(|i| lease(i, Some("a"), i as i64 + 1, 2_000_000))
            .collect();
        let plan = plan_leases("a", false, &devices, &leases, &nodes(&["a", "b"]), now(), 1);
        assert!(plan.acquire.is_empty());
        assert_eq!(plan.release, vec![uid(3), uid(2)]);
    }

    #[test]
    fn a_draining_node_takes_nothing_and_hands_back_everything() {
        let devices: Vec<DeviceUid> = (0..3).map(uid).collect();
        let leases = vec![
            lease(0, Some("a"), 1, 2_000_000),
            lease(1, Some("a"), 1, 2_000_000),
        ];
        let plan = plan_leases("a", true, &devices, &leases, &nodes(&["a"]), now(), 1);
        assert!(plan.acquire.is_empty());
        assert_eq!(plan.release.len(), 2);
    }

    #[test]
    fn the_share_rounds_up_so_no_device_is_left_over() {
        let devices: Vec<DeviceUid> = (0..7).map(uid).collect();
        let leases: Vec<DeviceLease> = (0..3)
            .map(|i| lease(i, Some("b"), 1, 2_000_000))
            .chain((3..6).map(|i| lease(i, Some("c"), 1, 2_000_000)))
            .collect();
        let plan = plan_leases(
            "a",
            false,
            &devices,
            &leases,
            &nodes(&["a", "b", "c"]),
            now(),
            1,
        );
        assert_eq!(plan.acquire, vec![uid(6)]);
    }

    #[test]
    fn different_seeds_try_devices_in_different_orders() {
        let devices: Vec<DeviceUid> = (0..20).map(uid).collect();
        let live = nodes(&["a", "b", "c", "d"]);
        let one = plan_leases("a", false, &devices, &[], &live, now(), 1);
        let two = plan_leases("a", false, &devices, &[], &live, now(), 2);
        assert_eq!(one.acquire.len(), 5);
        assert_ne!(one.acquire, two.acquire);
    }
}
