//! A fake WhatsApp server that unmodified whatsapp-rust 0.7 clients connect to, for wagate's
//! end-to-end tests. Test support only: it is never a dependency of the shipped binary (its
//! clients need `danger-skip-cert-chain-verify`).
//!
//! What it simulates: the Noise XX handshake, login (`<success>`, passive/active, offline
//! marker), accounts with a simulated primary phone, prekey registry and bundles, the PN↔LID
//! map, usync (lid, devices with key-index lists, contact), message relay with server acks,
//! receipt relay, chat states, offline queues, QR pairing by the simulated phone,
//! `media_conn` with a fake CDN, groups (creating one, its metadata, the groups an account
//! is in, member changes by admins, leaving, the invite link, `w:gp2` notifications of each
//! change, group messages fanned out with their sender keys, group receipts and chat
//! states; members addressed by phone number, or by LID with their numbers beside as
//! WhatsApp does today, see [`Simulator::set_lid_groups`]), and fault injection. Stanza
//! shapes are what whatsapp-rust 0.7 *accepts*, not captured WhatsApp traffic: the
//! simulator proves wagate's wiring and state machines, not protocol conformance. Every
//! stanza it does not understand is answered safely and logged with `tracing::warn!`, so a
//! protocol-crate upgrade shows what changed.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use wagate_wa_sim::Simulator;
//! use whatsapp_rust::prelude::*; // MessageExt::text_content
//! let sim = Simulator::new();
//! let alice = sim.create_account("15550000001", "Alice")?;
//! let bob = sim.create_account("15550000002", "Bob")?;
//! let a = sim.connect(&alice).await?; // a pre-seeded, paired whatsapp-rust Bot
//! let b = sim.connect(&bob).await?;
//! a.wait_connected(Duration::from_secs(10)).await?;
//! b.wait_connected(Duration::from_secs(10)).await?;
//! a.client().send_text(bob.pn_jid(), "hi").await?;
//! let (message, _info) = b.wait_message(Duration::from_secs(10), |m, _| m.text_content() == Some("hi")).await?;
//! # let _ = message; Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::traits::Backend;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::{Jid, Server};

mod adv;
mod conn;
mod group_relay;
mod groups;
mod harness;
mod iq;
mod media;
mod noise;
mod pairing;
mod relay;
mod stanza;
mod transport;
mod usync;
mod world;

pub use harness::{EventLog, SimClient};
pub use media::{MEDIA_HOST, SimHttpClient};
pub use transport::SimTransportFactory;

use world::{AccountRecord, ConnCmd, DeviceKeys, DeviceRecord, World};

/// State shared by the simulator handle, its transports and its connection tasks.
pub(crate) struct Shared {
    world: Mutex<World>,
    identity: noise::ServerIdentity,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock (a bug in a handler) must not wedge every other
        // connection of the test; the state is still usable for diagnosis.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The simulator. Cheap to clone (all clones are the same server).
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Simulator")
    }
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

/// A simulated WhatsApp account (a phone number with its primary phone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Phone number, digits only (the JID user part).
    pub phone: String,
    /// The account's LID user part.
    pub lid: String,
}

impl Account {
    /// `phone@s.whatsapp.net`: the address to send messages to.
    pub fn pn_jid(&self) -> Jid {
        Jid::pn(self.phone.clone())
    }
    /// `lid@lid`.
    pub fn lid_jid(&self) -> Jid {
        Jid::lid(self.lid.clone())
    }
    /// `phone:device@s.whatsapp.net`; device 0 is the simulated phone.
    pub fn device_jid(&self, device: u16) -> Jid {
        Jid::pn_device(self.phone.clone(), device)
    }
}

/// A linked companion device made without pairing: save `device` into a backend before
/// building the client, and it logs in as `jid`.
#[derive(Clone)]
pub struct SeededDevice {
    pub jid: Jid,
    pub device: Device,
}

impl std::fmt::Debug for SeededDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededDevice")
            .field("jid", &self.jid)
            .finish_non_exhaustive()
    }
}

/// The kind of receipt a simulated phone sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
    Played,
}

impl Simulator {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                world: Mutex::new(World::default()),
                identity: noise::ServerIdentity::generate(),
            }),
        }
    }

    /// The in-process transport for `BotBuilder::with_transport_factory`.
    pub fn transport(&self) -> SimTransportFactory {
        SimTransportFactory {
            shared: self.shared.clone(),
            opened: Default::default(),
            severed: Default::default(),
        }
    }

    /// The fake CDN as an `HttpClient`, for `BotBuilder::with_http_client`.
    pub fn http_client(&self) -> SimHttpClient {
        SimHttpClient {
            shared: self.shared.clone(),
        }
    }

    /// Serves WebSocket clients on `addr` (e.g. `"127.0.0.1:0"`) and returns the `ws://` URL for
    /// `TokioWebSocketTransportFactory::new().with_url(..)`. Must run inside a tokio runtime.
    pub async fn listen(&self, addr: &str) -> Result<String> {
        transport::listen(self.shared.clone(), addr).await
    }

    /// Registers a WhatsApp account for `phone` (digits; `+`, spaces and dashes are ignored)
    /// with a simulated primary phone. Numbers never created are "not on WhatsApp".
    pub fn create_account(&self, phone: &str, push_name: &str) -> Result<Account> {
        let pn: String = phone.chars().filter(char::is_ascii_digit).collect();
        if pn.is_empty() || pn.starts_with('0') {
            bail!("{phone:?} is not an international phone number");
        }
        let mut world = self.shared.lock();
        if world.accounts.contains_key(&pn) {
            bail!("account {pn} already exists");
        }
        let n = world.next_counter();
        let lid = (100_000_000_000_000 + n * 7_919).to_string();
        let raw_id = u32::try_from(n).unwrap_or(u32::MAX);
        let mut phone_device = Device::new();
        phone_device.pn = Some(Jid::pn(pn.clone()));
        phone_device.lid = Some(Jid::lid(lid.clone()));
        phone_device.push_name = push_name.to_string();
        // The primary signs its own identity with itself: it *is* the account key.
        let own = adv::fully_signed_identity(
            &phone_device.identity_key,
            &phone_device.identity_key,
            0,
            raw_id,
        )?;
        phone_device.account = Some(Arc::new(own));
        let mut devices = std::collections::BTreeMap::new();
        devices.insert(
            0,
            DeviceRecord {
                keys: Some(DeviceKeys::from_device(&phone_device)),
                ..DeviceRecord::default()
            },
        );
        world.lid_to_pn.insert(lid.clone(), pn.clone());
        world.accounts.insert(
            pn.clone(),
            AccountRecord {
                pn: pn.clone(),
                lid: lid.clone(),
                push_name: push_name.to_string(),
                phone: Arc::new(phone_device),
                devices,
                next_device: 1,
                ban: None,
                raw_id,
            },
        );
        Ok(Account { phone: pn, lid })
    }

    /// Links a new companion to `account` without pairing (the shortcut): the returned
    /// `Device` has `pn`, `lid`, a non-empty push name and a properly signed ADV identity, and
    /// the server already knows its identity and signed prekey, so peers can message it even
    /// before its first login.
    pub fn seed_device(&self, account: &Account, push_name: &str) -> Result<SeededDevice> {
        if push_name.is_empty() {
            // An empty push name sends the client down the fresh-pairing path (it waits for a
            // critical app-state sync).
            bail!("a seeded device needs a non-empty push name");
        }
        let mut world = self.shared.lock();
        let record = world
            .accounts
            .get_mut(&account.phone)
            .ok_or_else(|| anyhow!("no account {}", account.phone))?;
        let id = record.next_device;
        record.next_device += 1;
        let mut device = Device::new();
        device.pn = Some(record.pn_jid(id));
        device.lid = Some(record.lid_jid(id));
        device.push_name = push_name.to_string();
        let signed = adv::fully_signed_identity(
            &record.phone.identity_key,
            &device.identity_key,
            id,
            record.raw_id,
        )?;
        record.devices.insert(
            id,
            DeviceRecord {
                keys: Some(DeviceKeys::from_device(&device)),
                device_identity: Some(signed.encode_to_vec()),
                ..DeviceRecord::default()
            },
        );
        device.account = Some(Arc::new(signed));
        Ok(SeededDevice {
            jid: record.pn_jid(id),
            device,
        })
    }

    /// [`Self::seed_device`] and save it into `backend` (an empty store).
    pub async fn seed_backend(
        &self,
        account: &Account,
        push_name: &str,
        backend: &dyn Backend,
    ) -> Result<Jid> {
        let seeded = self.seed_device(account, push_name)?;
        backend.save(&seeded.device).await?;
        Ok(seeded.jid)
    }

    /// The simulated phone's own keys as a store `Device` (device 0), for running a real
    /// whatsapp-rust client *as the phone* (see [`Self::connect_phone`]).
    pub fn phone_device(&self, account: &Account) -> Result<Device> {
        let world = self.shared.lock();
        let record = world
            .accounts
            .get(&account.phone)
            .ok_or_else(|| anyhow!("no account {}", account.phone))?;
        Ok(Device::clone(&record.phone))
    }

    /// The phone of `account` scans a QR code shown by a fresh client
    /// (`Event::PairingQrCode.code`). Returns the new companion's JID; the client then gets
    /// `PairSuccess`, reconnects and logs in.
    pub fn scan_qr(&self, account: &Account, code: &str) -> Result<Jid> {
        pairing::scan(&self.shared, &account.phone, code)
    }

    /// The user of `account`'s phone types the pair code a fresh client got from
    /// `Client::pair_with_code` (`Event::PairingCode.code`). The client then links as a new
    /// companion exactly as after a QR scan (`PairSuccess`, reconnect, login).
    pub fn enter_pair_code(&self, account: &Account, code: &str) -> Result<()> {
        pairing::enter_code(&self.shared, &account.phone, code)
    }

    /// The simulated phone of `account` sends a receipt for `ids` to `to` (the sender's device
    /// JID, as in `MessageInfo.source.sender`), e.g. to mark messages read.
    pub fn phone_send_receipt(
        &self,
        account: &Account,
        to: &Jid,
        ids: &[&str],
        kind: ReceiptKind,
    ) -> Result<()> {
        let Some((first, rest)) = ids.split_first() else {
            return Ok(());
        };
        let mut world = self.shared.lock();
        let me = world
            .accounts
            .get(&account.phone)
            .ok_or_else(|| anyhow!("no account {}", account.phone))?;
        let mut receipt = NodeBuilder::new("receipt")
            .attr("from", me.jid_like(to, 0))
            .attr("id", *first)
            .attr("t", stanza::now_secs());
        match kind {
            ReceiptKind::Delivered => {}
            ReceiptKind::Read => receipt = receipt.attr("type", "read"),
            ReceiptKind::Played => receipt = receipt.attr("type", "played"),
        }
        if !rest.is_empty() {
            receipt = receipt.children([NodeBuilder::new("list")
                .children(
                    rest.iter()
                        .map(|id| NodeBuilder::new("item").attr("id", *id).build()),
                )
                .build()]);
        }
        let target = world
            .account_pn(to)
            .ok_or_else(|| anyhow!("{to} is not a simulated account"))?;
        world.deliver(&target, to.device, receipt.build());
        Ok(())
    }

    /// What the chat of `recipient` with `sender` shows of the sender: `composing`,
    /// `recording` or `paused` (the last chat state the sender's devices set), if any.
    pub fn chat_state_seen(&self, recipient: &Account, sender: &Account) -> Option<String> {
        self.chat_state_between(&recipient.phone, &sender.phone)
    }

    /// [`Self::chat_state_seen`] by phone numbers (digits).
    pub fn chat_state_between(&self, recipient: &str, sender: &str) -> Option<String> {
        self.shared
            .lock()
            .chat_states
            .get(&(recipient.to_owned(), sender.to_owned()))
            .cloned()
    }

    /// The message ids named by `read` receipts handed to any device of `account`
    /// (queued for it or written to its connections), in order.
    pub fn read_receipts_to(&self, account: &Account) -> Vec<String> {
        let world = self.shared.lock();
        let Some(a) = world.accounts.get(&account.phone) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for d in a.devices.values() {
            for r in d.delivered.iter().chain(&d.queue) {
                if r.tag != "receipt" || stanza::attr(r, "type").as_deref() != Some("read") {
                    continue;
                }
                ids.extend(stanza::attr(r, "id"));
                if let Some(list) = stanza::child(r, "list") {
                    ids.extend(
                        stanza::children(list)
                            .iter()
                            .filter_map(|i| stanza::attr(i, "id")),
                    );
                }
            }
        }
        ids
    }

    /// Stanzas the simulated phone of `account` has received (messages fanned out to device 0,
    /// receipts). The phone never answers them unless a client runs as the phone.
    pub fn phone_inbox(&self, account: &Account) -> Vec<Node> {
        let world = self.shared.lock();
        world
            .accounts
            .get(&account.phone)
            .and_then(|a| a.devices.get(&0))
            .map(|d| d.queue.iter().chain(&d.delivered).cloned().collect())
            .unwrap_or_default()
    }

    /// Every stanza the server has written to `device`'s connections (not counting those still
    /// queued while it is offline).
    pub fn delivered(&self, device: &Jid) -> Vec<Node> {
        self.with_device(device, |d| d.delivered.clone())
            .unwrap_or_default()
    }

    /// How many `<message>` stanzas with each id were written to `device`'s connections
    /// (redeliveries after a dropped connection included; queued ones not yet).
    pub fn message_stanzas(&self, device: &Jid) -> HashMap<String, u32> {
        self.with_device(device, |d| d.message_stanzas.clone())
            .unwrap_or_default()
    }

    /// How many times the server took a `<message>` stanza with this id from a sender (every
    /// hand-off, resends under the same id included).
    pub fn messages_taken(&self, id: &str) -> u32 {
        self.shared
            .lock()
            .messages_taken
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// How many stanzas wait in `device`'s offline queue.
    pub fn queued(&self, device: &Jid) -> usize {
        self.with_device(device, |d| d.queue.len()).unwrap_or(0)
    }

    /// Whether `device` is connected and has sent `<active/>`.
    pub fn is_online(&self, device: &Jid) -> bool {
        self.with_device(device, |d| d.online).unwrap_or(false)
    }

    fn with_device<T>(&self, device: &Jid, f: impl FnOnce(&DeviceRecord) -> T) -> Option<T> {
        let world = self.shared.lock();
        let pn = world.account_pn(device)?;
        world.accounts.get(&pn)?.devices.get(&device.device).map(f)
    }

    fn command(&self, device: &Jid, cmd: ConnCmd) -> bool {
        let world = self.shared.lock();
        let Some(pn) = world.account_pn(device) else {
            return false;
        };
        world
            .conn_of(&pn, device.device)
            .is_some_and(|conn| world.send_to_conn(conn, cmd))
    }

    // ---- fault injection -------------------------------------------------------------

    /// Drops `device`'s connection without a word (the client sees the stream end and
    /// reconnects on its own). Returns false if it was not connected.
    pub fn drop_connection(&self, device: &Jid) -> bool {
        self.command(device, ConnCmd::Close { last: None })
    }

    /// Sends `<stream:error code=…/>` and closes (515 = "restart the stream": the client
    /// reconnects at once).
    pub fn stream_error(&self, device: &Jid, code: u16) -> bool {
        self.command(
            device,
            ConnCmd::Close {
                last: Some(NodeBuilder::new("stream:error").attr("code", code).build()),
            },
        )
    }

    /// Unlinks `device` as if removed from the phone's "Linked devices": a live connection gets
    /// `<conflict type="device_removed"/>` (the client emits `LoggedOut`), later logins fail.
    pub fn remove_device(&self, device: &Jid) -> bool {
        let sent = self.command(
            device,
            ConnCmd::Close {
                last: Some(
                    NodeBuilder::new("stream:error")
                        .attr("code", "401")
                        .children([NodeBuilder::new("conflict")
                            .attr("type", "device_removed")
                            .build()])
                        .build(),
                ),
            },
        );
        let mut world = self.shared.lock();
        if let Some(pn) = world.account_pn(device)
            && let Some(record) = world
                .accounts
                .get_mut(&pn)
                .and_then(|a| a.devices.get_mut(&device.device))
        {
            record.removed = true;
        }
        sent
    }

    /// Temporarily bans `account`: live connections are dropped, and logins are refused with
    /// `<failure reason="402" code expire/>` (the client emits `TemporaryBan`) until
    /// [`Self::lift_ban`].
    pub fn temp_ban(&self, account: &Account, code: u64, expire: Duration) {
        let mut world = self.shared.lock();
        let conns: Vec<_> = match world.accounts.get_mut(&account.phone) {
            Some(record) => {
                record.ban = Some((code, expire.as_secs()));
                record.devices.values().filter_map(|d| d.conn).collect()
            }
            None => return,
        };
        for conn in conns {
            world.send_to_conn(conn, ConnCmd::Close { last: None });
        }
    }

    pub fn lift_ban(&self, account: &Account) {
        if let Some(record) = self.shared.lock().accounts.get_mut(&account.phone) {
            record.ban = None;
        }
    }

    /// The next `<message>` sent by `device` is refused with `<ack error=code>` (the client
    /// emits `ServerAck { error: Some(code) }`) and not delivered.
    pub fn nack_next_message(&self, device: &Jid, code: &str) {
        let mut world = self.shared.lock();
        if let Some(pn) = world.account_pn(device) {
            world
                .faults
                .nack_next
                .insert((pn, device.device), code.to_string());
        }
    }

    /// Groups created from now on address their members by LID (`addressing_mode="lid"`,
    /// as WhatsApp's groups do today) when `on`, else by phone number (the default). In LID
    /// mode the metadata names members and the creator by LID with `phone_number` /
    /// `creator_pn` beside them, messages come with `participant=<LID device>` and
    /// `participant_pn`, receipts and chat states name members by LID, and `w:gp2`
    /// notifications name them by LID with `phone_number`. Groups created earlier keep their
    /// mode.
    pub fn set_lid_groups(&self, on: bool) {
        self.shared.lock().new_group_addressing = if on {
            world::Addressing::Lid
        } else {
            world::Addressing::Pn
        };
    }

    /// Delays every stanza the server writes by `latency` (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().faults.latency = latency;
    }

    /// Polls `condition` (on simulator state, e.g. [`Self::is_online`]) until it holds or
    /// `timeout` passes. For state that no client event announces.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Simulator) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !condition(self) {
            if tokio::time::Instant::now() >= deadline {
                bail!("condition not met within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The display name the account was created with.
    pub fn push_name(&self, account: &Account) -> Result<String> {
        self.shared
            .lock()
            .accounts
            .get(&account.phone)
            .map(|a| a.push_name.clone())
            .ok_or_else(|| anyhow!("no account {}", account.phone))
    }

    /// The account behind `jid` (PN or LID, any device).
    pub fn account(&self, jid: &Jid) -> Option<Account> {
        let world = self.shared.lock();
        world.account_of(jid).map(|a| Account {
            phone: a.pn.clone(),
            lid: a.lid.clone(),
        })
    }

    /// `jid` with the same user and device in the other namespace (PN ↔ LID), if known.
    pub fn other_namespace(&self, jid: &Jid) -> Option<Jid> {
        let account = self.account(jid)?;
        Some(match jid.server {
            Server::Lid => Jid::pn_device(account.phone, jid.device),
            _ => Jid::lid_device(account.lid, jid.device),
        })
    }
}
