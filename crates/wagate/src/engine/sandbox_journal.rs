//! The sandbox network's own durable state: what its simulated WhatsApp server accepted
//! and what the simulated phones still owe for it.
//!
//! WhatsApp's server keeps its state across a gateway's crash: a message it acknowledged is
//! still delivered, and its receipts still come, after the gateway restarts. The sandbox
//! simulates that server inside the gateway's own process, so it must keep the same
//! promise itself; held only in timers, its obligations died with a `kill -9` and left
//! accepted messages `sent` or `delivered` for good. The network therefore writes every
//! accepted message to this journal (fsync'd before the server's ack is emitted), then what
//! became of it, and replays the open obligations at start. The journal also remembers
//! every WhatsApp message id the server took, so a resend after a crash (same id) is
//! acknowledged but not shown to the recipient again.
//!
//! Format: one JSON record per line, appended by one writer thread that fsyncs once per
//! batch (group commit), so concurrent senders share fsyncs. At open the file is replayed
//! and rewritten compactly (ids already settled keep only their id).

use super::sandbox_groups::SandboxGroup;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use tokio::sync::oneshot;
use wagate_core::content::Details;
use wagate_core::engine::{IncomingMedia, IncomingMessage};
use wagate_core::message::MessageKind;
use wagate_core::{DeviceUid, Phone, time};

/// What the network still owes for one accepted message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Owed {
    pub pid: String,
    /// The sending device, which gets the receipts.
    pub sender: String,
    /// A voice note is also played.
    pub voice: bool,
    /// For a message to another sandbox device: what that device must receive (until it
    /// has committed it; the receipts follow).
    pub inbound: Option<OwedInbound>,
    /// For a message to a group: what each member's sandbox device must still receive
    /// (the receipts follow once all have it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<OwedInbound>,
    /// A group notification rather than a message: nobody sends receipts for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notice: bool,
}

impl Owed {
    /// Whether some recipient device has not committed it yet.
    pub fn undelivered(&self) -> bool {
        self.inbound.is_some() || !self.group.is_empty()
    }

    /// `peer` committed it: `false` when `peer` owed nothing for it.
    pub fn received_by(&mut self, peer: &str) -> bool {
        if self.inbound.as_ref().is_some_and(|i| i.peer == peer) {
            self.inbound = None;
            return true;
        }
        match self.group.iter().position(|i| i.peer == peer) {
            Some(at) => {
                self.group.remove(at);
                true
            }
            None => false,
        }
    }

    /// Every recipient device still owed it, with what it must receive.
    pub fn recipients(&self) -> impl Iterator<Item = &OwedInbound> {
        self.inbound.iter().chain(self.group.iter())
    }
}

/// A message still to hand to a sandbox recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OwedInbound {
    pub peer: String,
    pub from: String,
    pub from_name: Option<String>,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub media: Option<OwedMedia>,
    /// Location, contacts, poll and quote (absent from journals written before them).
    #[serde(default, skip_serializing_if = "Details::is_empty")]
    pub details: Details,
    /// The group it was sent in, and the group's subject then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OwedMedia {
    /// The bytes, base64.
    pub data: String,
    pub mime_type: String,
    pub file_name: Option<String>,
}

impl OwedInbound {
    pub fn new(peer: &DeviceUid, m: &IncomingMessage) -> Self {
        Self {
            peer: peer.as_str().to_owned(),
            from: m
                .from
                .as_ref()
                .map(|p| p.digits().to_owned())
                .unwrap_or_default(),
            from_name: m.from_name.clone(),
            kind: m.kind,
            text: m.text.clone(),
            media: m.media.as_ref().map(|x| OwedMedia {
                data: B64.encode(&x.data),
                mime_type: x.mime_type.clone(),
                file_name: x.file_name.clone(),
            }),
            details: m.details.clone(),
            group_id: m.group_id.clone(),
            group_name: m.group_name.clone(),
        }
    }

    pub fn peer(&self) -> Option<DeviceUid> {
        DeviceUid::parse(&self.peer).ok()
    }

    /// The message as the recipient sees it (rebuilt after a restart).
    pub fn message(&self, pid: &str) -> IncomingMessage {
        IncomingMessage {
            provider_message_id: pid.to_owned(),
            from: Phone::parse(&self.from).ok(),
            from_lid: None,
            from_name: self.from_name.clone(),
            kind: self.kind,
            text: self.text.clone(),
            media: self.media.as_ref().map(|m| IncomingMedia {
                data: B64.decode(&m.data).unwrap_or_default().into(),
                mime_type: m.mime_type.clone(),
                file_name: m.file_name.clone(),
            }),
            details: self.details.clone(),
            is_group: self.group_id.is_some(),
            group_id: self.group_id.clone(),
            group_name: self.group_name.clone(),
            timestamp: time::now(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    /// The server took the message (and will acknowledge it).
    Accepted(Box<Owed>),
    /// A recipient device (`peer`; absent in journals written before groups: the one
    /// recipient) committed the message; the receipts are owed once all have.
    Received {
        pid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
    /// The last receipt was committed by the sender: nothing more is owed.
    Done { pid: String },
    /// An id settled before the last compaction (kept to dedupe resends).
    Seen { pid: String },
    /// A group as it is after a change (the last one of an id wins).
    Group(Box<SandboxGroup>),
    /// A group with no members left.
    GroupGone { id: String },
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub(super) struct Replayed {
    /// Every WhatsApp message id the server ever took.
    pub seen: HashSet<String>,
    /// The obligations still open.
    pub owed: HashMap<String, Owed>,
    /// The groups, by id.
    pub groups: HashMap<String, SandboxGroup>,
}

type Pending = (Vec<u8>, Option<oneshot::Sender<io::Result<()>>>);

/// The append side of the journal.
pub(super) struct Journal {
    tx: Mutex<mpsc::Sender<Pending>>,
}

impl Journal {
    /// Replays `path` (missing: empty), rewrites it compactly and starts its writer.
    pub fn open(path: &Path) -> io::Result<(Self, Replayed)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let replayed = replay(path)?;
        compact(path, &replayed)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let (tx, rx) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("sandbox-journal".into())
            .spawn(move || writer(file, rx))?;
        Ok((Self { tx: Mutex::new(tx) }, replayed))
    }

    fn send(&self, record: &Record, done: Option<oneshot::Sender<io::Result<()>>>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                if let Some(d) = done {
                    let _ = d.send(Err(io::Error::other(e)));
                }
                return;
            }
        };
        line.push(b'\n');
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(mpsc::SendError((_, Some(d)))) = tx.send((line, done)) {
            let _ = d.send(Err(io::Error::other("the sandbox journal writer stopped")));
        }
    }

    /// Records an accepted message; returns once it is on disk.
    pub async fn accepted(&self, owed: &Owed) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(&Record::Accepted(Box::new(owed.clone())), Some(tx));
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("the sandbox journal writer stopped")))
    }

    /// The recipient `peer` committed the message. Not waited for: if it is lost, the
    /// message is handed again after a restart and the recipient's store shows it once.
    pub fn received(&self, pid: &str, peer: &str) {
        self.send(
            &Record::Received {
                pid: pid.to_owned(),
                peer: Some(peer.to_owned()),
            },
            None,
        );
    }

    /// A group was created or changed. Queued at once, in the order of the calls (the
    /// caller holds the network's lock, so the journal's order is the changes' order);
    /// the future resolves once it is on disk (the caller is told the change was made
    /// only then).
    pub fn group(
        &self,
        group: &SandboxGroup,
    ) -> impl std::future::Future<Output = io::Result<()>> + use<> {
        let (tx, rx) = oneshot::channel();
        let record = if group.members.is_empty() {
            Record::GroupGone {
                id: group.id.to_string(),
            }
        } else {
            Record::Group(Box::new(group.clone()))
        };
        self.send(&record, Some(tx));
        async move {
            rx.await
                .unwrap_or_else(|_| Err(io::Error::other("the sandbox journal writer stopped")))
        }
    }

    /// Nothing more is owed. Not waited for: if it is lost, the receipts come again after
    /// a restart, and statuses only move forward.
    pub fn done(&self, pid: &str) {
        self.send(
            &Record::Done {
                pid: pid.to_owned(),
            },
            None,
        );
    }
}

/// Appends batches: everything queued is written, then fsync'd once, then every waiter
/// of the batch is answered.
fn writer(mut file: File, rx: mpsc::Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut buf = Vec::new();
        for (line, _) in &batch {
            buf.extend_from_slice(line);
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = &result {
            tracing::error!(error = %e, "the sandbox journal cannot be written");
        }
        for (_, done) in batch {
            if let Some(d) = done {
                let _ = d.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    }
}

fn replay(path: &Path) -> io::Result<Replayed> {
    let mut out = Replayed::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).lines() {
        let line = line?;
        // A torn last line (the process died mid-append) was never acknowledged to
        // anyone: skipping it is right.
        let Ok(record) = serde_json::from_str::<Record>(&line) else {
            continue;
        };
        match record {
            Record::Accepted(owed) => {
                out.seen.insert(owed.pid.clone());
                out.owed.insert(owed.pid.clone(), *owed);
            }
            Record::Received { pid, peer } => {
                if let Some(o) = out.owed.get_mut(&pid) {
                    match peer {
                        Some(peer) => {
                            o.received_by(&peer);
                        }
                        None => o.inbound = None,
                    }
                }
            }
            Record::Group(g) => {
                out.groups.insert(g.id.to_string(), *g);
            }
            Record::GroupGone { id } => {
                out.groups.remove(&id);
            }
            Record::Done { pid } => {
                out.owed.remove(&pid);
            }
            Record::Seen { pid } => {
                out.seen.insert(pid);
            }
        }
    }
    Ok(out)
}

/// Rewrites the journal as its replayed state: a temporary file, fsync'd, renamed over
/// the old one, then the directory fsync'd, so a crash leaves one or the other whole.
fn compact(path: &Path, state: &Replayed) -> io::Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("tmp");
    let mut buf = Vec::new();
    for pid in state.seen.iter().filter(|p| !state.owed.contains_key(*p)) {
        serde_json::to_writer(&mut buf, &Record::Seen { pid: pid.clone() })?;
        buf.push(b'\n');
    }
    for owed in state.owed.values() {
        serde_json::to_writer(&mut buf, &Record::Accepted(Box::new(owed.clone())))?;
        buf.push(b'\n');
    }
    for group in state.groups.values() {
        serde_json::to_writer(&mut buf, &Record::Group(Box::new(group.clone())))?;
        buf.push(b'\n');
    }
    let mut f = File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owed(pid: &str, inbound: bool) -> Owed {
        Owed {
            pid: pid.into(),
            sender: "dev_a".into(),
            voice: false,
            inbound: inbound.then(|| OwedInbound {
                peer: "dev_b".into(),
                from: "15550001111".into(),
                from_name: Some("A".into()),
                kind: MessageKind::Text,
                text: Some("hi".into()),
                media: None,
                details: Details::default(),
                group_id: None,
                group_name: None,
            }),
            group: Vec::new(),
            notice: false,
        }
    }

    #[tokio::test]
    async fn replays_open_obligations_and_every_id_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox").join("network.journal");
        {
            let (j, r) = Journal::open(&path).unwrap();
            assert!(r.seen.is_empty() && r.owed.is_empty());
            for (pid, inbound) in [("p1", true), ("p2", true), ("p3", false)] {
                j.accepted(&owed(pid, inbound)).await.unwrap();
            }
            j.received("p1", "dev_b");
            j.received("p2", "dev_b");
            j.done("p2");
            // Unwaited records are on disk once a later waited one is (one writer, FIFO).
            j.accepted(&owed("p4", false)).await.unwrap();
        }
        // A torn line from a crash mid-append is ignored.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"accepted\",\"pid\":\"p5\",\"sen")
            .unwrap();
        drop(f);
        for _ in 0..2 {
            // The second open reads the compacted file: the same state.
            let (_j, r) = Journal::open(&path).unwrap();
            let mut seen: Vec<_> = r.seen.iter().cloned().collect();
            seen.sort();
            assert_eq!(seen, ["p1", "p2", "p3", "p4"]);
            let mut open: Vec<_> = r.owed.keys().cloned().collect();
            open.sort();
            assert_eq!(open, ["p1", "p3", "p4"]);
            assert!(r.owed["p1"].inbound.is_none(), "p1 was received");
        }
    }
}
