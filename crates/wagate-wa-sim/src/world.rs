//! The simulator's state: accounts, their devices and keys, the PN↔LID map, live connections,
//! offline queues, pending pairings, media blobs, groups (each addressing its members by phone
//! number or by LID, see [`Addressing`]) and armed faults.
//!
//! One `std::sync::Mutex` guards it all. Handlers never await while holding it: they mutate,
//! queue outbound stanzas on per-connection channels, and return. That keeps the ordering
//! argument simple (everything a device is sent passes through one channel in lock order) and
//! is plenty for test loads of a few hundred clients.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::{Jid, Server};

pub(crate) type ConnId = u64;

/// What other parts of the simulator can ask a connection task to do.
#[derive(Debug)]
pub(crate) enum ConnCmd {
    /// Encrypt and write this stanza.
    Send(Node),
    /// Write `last` (if any), then close the transport.
    Close { last: Option<Node> },
}

pub(crate) struct ConnEntry {
    pub(crate) tx: UnboundedSender<ConnCmd>,
    /// Set once the connection logged in as a device: (phone number, device id).
    pub(crate) device: Option<(String, u16)>,
}

/// A device's public Signal keys, as uploaded by the device (or known from its seed).
#[derive(Clone)]
pub(crate) struct DeviceKeys {
    pub(crate) registration_id: u32,
    pub(crate) identity: Vec<u8>,
    pub(crate) signed_id: u32,
    pub(crate) signed_pub: Vec<u8>,
    pub(crate) signed_sig: Vec<u8>,
    pub(crate) one_time: VecDeque<(u32, Vec<u8>)>,
}

impl DeviceKeys {
    pub(crate) fn from_device(d: &Device) -> Self {
        Self {
            registration_id: d.registration_id,
            identity: d.identity_key.public_key.public_key_bytes().to_vec(),
            signed_id: d.signed_pre_key_id,
            signed_pub: d.signed_pre_key.public_key.public_key_bytes().to_vec(),
            signed_sig: d.signed_pre_key_signature.to_vec(),
            one_time: VecDeque::new(),
        }
    }
}

#[derive(Default)]
pub(crate) struct DeviceRecord {
    pub(crate) keys: Option<DeviceKeys>,
    /// The `ADVSignedDeviceIdentity` peers get as `<device-identity>` with this device's bundle.
    /// `Some` for every linked companion; `None` while a QR pairing is still in flight.
    pub(crate) device_identity: Option<Vec<u8>>,
    pub(crate) conn: Option<ConnId>,
    /// True after the connection sent `<active/>`: only then are stanzas sent directly.
    pub(crate) online: bool,
    pub(crate) queue: Vec<Node>,
    /// Messages, receipts and notifications written to the connection but not yet acked by
    /// the client. Like
    /// WhatsApp, the server keeps them until the `<ack>` (`class` = the stanza's tag); if the
    /// connection dies, or another login replaces it, first, they are queued again, so a
    /// stanza racing a disconnect, or read by a client that was paused meanwhile, is
    /// redelivered to the device's next connection instead of lost.
    pub(crate) unacked: Vec<Node>,
    /// Every stanza handed to this device's connection, for test assertions.
    pub(crate) delivered: Vec<Node>,
    /// How many `<message>` stanzas were written to this device's connections, per message
    /// id: a redelivery after a dropped connection counts again, so tests can tell how many
    /// times the recipient side was handed each message.
    pub(crate) message_stanzas: HashMap<String, u32>,
    pub(crate) removed: bool,
}

impl DeviceRecord {
    /// Records that `node` was written to this device's connection.
    pub(crate) fn sent(&mut self, node: &Node) {
        if node.tag == "message" || node.tag == "receipt" || node.tag == "notification" {
            self.unacked.push(node.clone());
        }
        if node.tag == "message"
            && let Some(id) = crate::stanza::attr(node, "id")
        {
            *self.message_stanzas.entry(id).or_insert(0) += 1;
        }
        self.delivered.push(node.clone());
    }

    /// The connection is gone (or replaced): unacked stanzas go back to the queue's front.
    pub(crate) fn requeue_unacked(&mut self) {
        if !self.unacked.is_empty() {
            let mut queue = std::mem::take(&mut self.unacked);
            queue.append(&mut self.queue);
            self.queue = queue;
        }
    }

    pub(crate) fn is_linked(&self, device_id: u16) -> bool {
        !self.removed && (device_id == 0 || self.device_identity.is_some())
    }
}

pub(crate) struct AccountRecord {
    pub(crate) pn: String,
    pub(crate) lid: String,
    pub(crate) push_name: String,
    /// The simulated primary phone (device 0). Its Signal identity is the account key.
    pub(crate) phone: Arc<Device>,
    pub(crate) devices: BTreeMap<u16, DeviceRecord>,
    pub(crate) next_device: u16,
    pub(crate) ban: Option<(u64, u64)>,
    pub(crate) raw_id: u32,
}

impl AccountRecord {
    pub(crate) fn pn_jid(&self, device: u16) -> Jid {
        Jid::pn_device(self.pn.clone(), device)
    }
    pub(crate) fn lid_jid(&self, device: u16) -> Jid {
        Jid::lid_device(self.lid.clone(), device)
    }
    /// This account's device `device` addressed in the namespace of `like`.
    pub(crate) fn jid_like(&self, like: &Jid, device: u16) -> Jid {
        if like.server == Server::Lid {
            self.lid_jid(device)
        } else {
            self.pn_jid(device)
        }
    }
    /// This account as a group with `addressing` names it (a member, an actor): its JID,
    /// and in LID mode the phone-number JID WhatsApp sends beside it.
    pub(crate) fn in_group(&self, addressing: Addressing) -> (Jid, Option<Jid>) {
        match addressing {
            Addressing::Pn => (Jid::pn(self.pn.clone()), None),
            Addressing::Lid => (Jid::lid(self.lid.clone()), Some(Jid::pn(self.pn.clone()))),
        }
    }
    /// Device `device` of this account as a group with `addressing` names it (a message's
    /// author, a receipt's reader), with its phone-number JID beside it in LID mode.
    pub(crate) fn device_in_group(
        &self,
        device: u16,
        addressing: Addressing,
    ) -> (Jid, Option<Jid>) {
        match addressing {
            Addressing::Pn => (self.pn_jid(device), None),
            Addressing::Lid => (self.lid_jid(device), Some(self.pn_jid(device))),
        }
    }
    pub(crate) fn linked_devices(&self) -> Vec<u16> {
        self.devices
            .iter()
            .filter(|(id, d)| d.is_linked(**id))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// The armed faults; each is consumed or cleared by the code path it affects.
#[derive(Default)]
pub(crate) struct Faults {
    /// Next `<message>` from this (phone number, device) gets a nack with this code.
    pub(crate) nack_next: HashMap<(String, u16), String>,
    /// Delay applied before the server writes each stanza.
    pub(crate) latency: Duration,
}

#[derive(Default)]
pub(crate) struct World {
    pub(crate) accounts: HashMap<String, AccountRecord>,
    pub(crate) lid_to_pn: HashMap<String, String>,
    pub(crate) conns: HashMap<ConnId, ConnEntry>,
    /// QR refs issued to unpaired connections.
    pub(crate) pairing_refs: HashMap<String, ConnId>,
    /// `<pair-success>` iq id → (connection, phone number, device id) awaiting the client's signature.
    pub(crate) pending_pairs: HashMap<String, (ConnId, String, u16)>,
    /// Pair-code requests by phone number (one live code per number, as on WhatsApp).
    pub(crate) pair_codes: HashMap<String, crate::pairing::PendingCode>,
    pub(crate) faults: Faults,
    /// How many `<message>` stanzas the server took (and acked without error) from senders,
    /// per message id: every hand-off counts, a resend under the same id included.
    pub(crate) messages_taken: HashMap<String, u32>,
    pub(crate) media: HashMap<String, Bytes>,
    /// What each chat shows of its other side: (recipient number, sender number) → the
    /// last chat state the sender set there (`composing`, `recording` or `paused`).
    pub(crate) chat_states: HashMap<(String, String), String>,
    /// Groups by id (the user part of their `@g.us` JID).
    pub(crate) groups: HashMap<String, GroupRecord>,
    /// How groups created from now on address their members
    /// (`Simulator::set_lid_groups`).
    pub(crate) new_group_addressing: Addressing,
    counter: u64,
}

/// A group: its members by phone number, with their roles. The record keys members by
/// number whatever the group's addressing; only what is sent to clients differs.
pub(crate) struct GroupRecord {
    pub(crate) id: String,
    pub(crate) subject: String,
    /// How its metadata, messages, receipts, chat states and notifications name members.
    pub(crate) addressing: Addressing,
    pub(crate) creator: String,
    pub(crate) creation: i64,
    pub(crate) participants: Vec<(String, GroupRole)>,
    /// The code of its invite link; a reset replaces it.
    pub(crate) invite_code: String,
}

impl GroupRecord {
    pub(crate) fn is_member(&self, pn: &str) -> bool {
        self.participants.iter().any(|(p, _)| p == pn)
    }

    pub(crate) fn is_admin(&self, pn: &str) -> bool {
        self.participants
            .iter()
            .any(|(p, role)| p == pn && *role != GroupRole::Member)
    }
}

/// How a group names its members on the wire (`addressing_mode`). WhatsApp's groups are
/// LID-addressed today: members, authors and readers by LID, each member's phone number in
/// a `phone_number` (or `participant_pn`) attribute beside it, from which the client builds
/// its LID→PN map. Older groups, and the simulator's default, name them by phone number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Addressing {
    #[default]
    Pn,
    Lid,
}

impl Addressing {
    /// The `addressing_mode` attribute's value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pn => "pn",
            Self::Lid => "lid",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupRole {
    Member,
    Admin,
    SuperAdmin,
}

impl World {
    /// A process-unique, increasing number for ids, refs, tokens and LIDs. Deterministic on
    /// purpose: failing tests are easier to read with stable ids.
    pub(crate) fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The account behind a JID in either namespace.
    pub(crate) fn account_pn(&self, jid: &Jid) -> Option<String> {
        match jid.server {
            Server::Pn => self
                .accounts
                .contains_key(jid.user.as_str())
                .then(|| jid.user.to_string()),
            Server::Lid => self.lid_to_pn.get(jid.user.as_str()).cloned(),
            _ => None,
        }
    }

    pub(crate) fn account_of(&self, jid: &Jid) -> Option<&AccountRecord> {
        self.account_pn(jid).and_then(|pn| self.accounts.get(&pn))
    }

    /// Hands `node` to a device: straight to its connection when it is online, else to its
    /// offline queue (drained on its next `<active/>`).
    pub(crate) fn deliver(&mut self, pn: &str, device: u16, node: Node) {
        let Some(record) = self
            .accounts
            .get_mut(pn)
            .and_then(|a| a.devices.get_mut(&device))
        else {
            tracing::debug!(%pn, device, "stanza for a device that does not exist; dropped");
            return;
        };
        if record.online
            && let Some(conn) = record.conn
            && let Some(entry) = self.conns.get(&conn)
            && entry.tx.send(ConnCmd::Send(node.clone())).is_ok()
        {
            record.sent(&node);
            return;
        }
        record.queue.push(node);
    }

    /// Hands `node` to a device only if it is online right now: for what means nothing
    /// later (chat states), which WhatsApp does not keep in the offline queue.
    pub(crate) fn deliver_live(&mut self, pn: &str, device: u16, node: Node) {
        if let Some(record) = self
            .accounts
            .get_mut(pn)
            .and_then(|a| a.devices.get_mut(&device))
            && record.online
            && let Some(conn) = record.conn
            && let Some(entry) = self.conns.get(&conn)
            && entry.tx.send(ConnCmd::Send(node.clone())).is_ok()
        {
            record.sent(&node);
        }
    }

    /// Sends a stanza to a connection regardless of device state (server replies, faults).
    pub(crate) fn send_to_conn(&self, conn: ConnId, cmd: ConnCmd) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|entry| entry.tx.send(cmd).is_ok())
    }

    /// The live connection of a device, if any.
    pub(crate) fn conn_of(&self, pn: &str, device: u16) -> Option<ConnId> {
        self.accounts
            .get(pn)?
            .devices
            .get(&device)?
            .conn
            .filter(|c| self.conns.contains_key(c))
    }
}
