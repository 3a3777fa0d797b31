//! The sandbox network's wire log: what crossed the simulated wire, kept on disk so a test
//! can count "exactly once" across a `kill -9` of the whole process.
//!
//! The network's counters (hand-offs, what each recipient was shown, committed acks) live
//! in memory and die with the process; a crash test needs them from before and after the
//! kill. With `sandbox.wire_log` on, each is appended here as one JSON line, written
//! before the call returns (no fsync: a killed process leaves its written pages to the
//! kernel; only a machine crash could lose them, and tests do not crash machines).
//!
//! Records: `{"op":"handoff","pid":…,"to":…}` for every hand-off the engine made (resends
//! included), `{"op":"shown","pid":…,"to":…}` when the simulated server took a message
//! and the recipient will see it (once per WhatsApp id, ever: the journal remembers ids
//! across restarts), `{"op":"acked","pid":…}` once the gateway committed the server ack.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

#[derive(Serialize)]
struct Line<'a> {
    op: &'a str,
    pid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
}

/// The append side of the wire log.
pub(super) struct WireLog {
    file: Mutex<File>,
}

impl WireLog {
    /// Opens (creating) the log at `path` for appending; earlier runs' lines are kept.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Writes the `shown` records a kill cut off: the server journals a message before
    /// the log says it is shown, so a `kill -9` between the two leaves a message the
    /// recipient sees (the journal hands it out after the restart) with no `shown` line.
    /// Each id in `journaled` (everything the server took, ever) without one gets it now,
    /// addressed as its first hand-off was.
    pub fn complete(
        &self,
        path: &Path,
        journaled: &std::collections::HashSet<String>,
    ) -> io::Result<()> {
        #[derive(serde::Deserialize)]
        struct Read {
            op: String,
            pid: String,
            to: Option<String>,
        }
        let text = std::fs::read_to_string(path)?;
        let mut shown = std::collections::HashSet::new();
        let mut to_of: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        // A line cut short by the kill is skipped: it is the last one, and incomplete.
        for line in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Read>(l).ok())
        {
            match line.op.as_str() {
                "shown" => {
                    shown.insert(line.pid);
                }
                "handoff" => {
                    if let Some(to) = line.to {
                        to_of.entry(line.pid).or_insert(to);
                    }
                }
                _ => {}
            }
        }
        for pid in journaled.iter().filter(|p| !shown.contains(*p)) {
            let to = to_of.get(pid).map_or("", String::as_str);
            self.shown(pid, to);
        }
        Ok(())
    }

    /// The engine handed a message to the network (a resend too).
    pub fn handoff(&self, pid: &str, to: &str) {
        self.append(Line {
            op: "handoff",
            pid,
            to: Some(to),
        });
    }

    /// The server took a message the recipient had not seen: it is shown now.
    pub fn shown(&self, pid: &str, to: &str) {
        self.append(Line {
            op: "shown",
            pid,
            to: Some(to),
        });
    }

    /// The gateway committed the server ack of a message.
    pub fn acked(&self, pid: &str) {
        self.append(Line {
            op: "acked",
            pid,
            to: None,
        });
    }

    fn append(&self, line: Line<'_>) {
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "sandbox wire log: cannot encode a record");
                return;
            }
        };
        bytes.push(b'\n');
        // One write per line under the lock: lines never interleave, and each is in the
        // kernel before the caller goes on.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&bytes) {
            tracing::error!(error = %e, "sandbox wire log cannot be written");
        }
    }
}
