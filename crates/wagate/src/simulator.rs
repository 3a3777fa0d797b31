//! `wagate serve --simulator` (cargo feature `simulator`, never in a default build): the
//! whatsapp-web engine talks to an in-process fake WhatsApp server (`wagate-wa-sim`)
//! instead of WhatsApp, for demos and benchmarks.
//!
//! The simulator's clients accept its self-made Noise certificate only because this
//! feature enables whatsapp-rust's `danger-skip-cert-chain-verify`, so a binary built with
//! it must never talk to WhatsApp; it warns loudly at start. In this mode a simulated phone
//! scans every QR code wagate shows (each device gets a fresh account, `+1555…`), so
//! devices link without a phone; pair codes are entered the same way.

use crate::app::{Resources, WebTweak};
use crate::config::Config;
use crate::database::Database;
use anyhow::Context;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wagate_core::device::{EngineKind, NewDevice, Pacing, SafetyLimits};
use wagate_core::{AccountId, DeviceUid};
use wagate_engine_web::WebEngineConfig;
use wagate_engine_web::wagate_wa_storage::{PgBackend, SqliteBackend};
pub use wagate_wa_sim::Simulator;

/// The WhatsApp Web version the simulator's clients announce (pinned, so nothing is
/// fetched from web.whatsapp.com).
pub const SIM_VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);

/// How often the simulated phones look for a QR code to scan.
const SCAN_INTERVAL: Duration = Duration::from_millis(500);

/// First phone number handed to an auto-linked device; the rest count up from it.
const FIRST_NUMBER: u64 = 15_550_000_000;

/// Logs, as loudly as a log can, that this process is not talking to WhatsApp.
pub fn warn_not_whatsapp() {
    let banner = "SIMULATOR MODE: the whatsapp-web engine talks to an in-process FAKE WhatsApp \
                  server, not to WhatsApp. Messages go nowhere real. This build has certificate \
                  checks disabled (danger-skip-cert-chain-verify) and must never be used with \
                  real WhatsApp accounts.";
    for _ in 0..3 {
        tracing::warn!("{banner}");
    }
}

/// Wires the whatsapp-web engine to `sim` (transport and media CDN), for
/// [`AppParts::web`](crate::app::AppParts::web); the rest stays as configured.
pub fn web_tweak(config: &Config, sim: &Simulator) -> anyhow::Result<WebTweak> {
    let version = config
        .whatsapp_web
        .parsed_version()
        .map_err(anyhow::Error::msg)?
        .unwrap_or(SIM_VERSION);
    let transport = sim.transport();
    let http = sim.http_client();
    Ok(Box::new(move |c: &mut WebEngineConfig| {
        c.wa_version = Some(version);
        c.transport = Some(Arc::new(transport));
        c.http_client = Some(Arc::new(http));
    }))
}

/// Simulated phones: every QR code a device shows is scanned by a new simulated account.
/// Stops when `stop` is cancelled.
pub fn spawn_phones(
    services: Resources,
    sim: Simulator,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = FIRST_NUMBER;
        let mut scanned: HashSet<String> = HashSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SCAN_INTERVAL) => {}
            }
            let devices = match services.store.list_all_devices().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "simulator: cannot list devices");
                    continue;
                }
            };
            for device in devices
                .iter()
                .filter(|d| d.engine == EngineKind::WhatsappWeb)
            {
                let Some(live) = services.runtime.live(&device.uid) else {
                    continue;
                };
                let Some((code, _expires)) = live.current_qr() else {
                    continue;
                };
                // A QR is shown until the pairing completes; scan each code once.
                if !scanned.insert(code.clone()) {
                    continue;
                }
                let number = next.to_string();
                next += 1;
                let linked = sim
                    .create_account(&number, &device.name)
                    .and_then(|account| sim.scan_qr(&account, &code));
                match linked {
                    Ok(jid) => {
                        tracing::info!(device = %device.uid, %jid, "simulator: a simulated phone scanned the QR code")
                    }
                    Err(e) => {
                        tracing::warn!(device = %device.uid, error = %e, "simulator: scanning failed")
                    }
                }
            }
        }
    })
}

/// Creates a whatsapp-web device of `account` that is already linked to a new simulated
/// account `phone`, without pairing (its key store is written directly). For benchmarks:
/// call before `app::start`, which then logs it in like any device after a restart.
pub async fn seed_linked_device(
    database: &Database,
    config: &Config,
    sim: &Simulator,
    account: &AccountId,
    name: &str,
    phone: &str,
) -> anyhow::Result<DeviceUid> {
    let sim_account = sim.create_account(phone, name)?;
    let uid = DeviceUid::new();
    // Where the engine will look for the device's keys: the database (no lease is held
    // yet, so unfenced), else `<devices dir>/<uid>.db`.
    if let Some(sqlite) = &database.sqlite {
        let db = crate::database::sqlite_protocol_db(sqlite, "seeding");
        let keys = SqliteBackend::new(db.read, db.writer, uid.as_str(), None);
        sim.seed_backend(&sim_account, name, &keys).await?;
    } else if let Some(pool) = &database.postgres {
        let keys = PgBackend::new(pool.clone(), uid.as_str());
        sim.seed_backend(&sim_account, name, &keys).await?;
    } else {
        let dir = config.devices_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{uid}.db"));
        let path = path
            .to_str()
            .context("the devices directory is not valid UTF-8")?
            .to_owned();
        let keys = wagate_engine_web::whatsapp_rust::store::SqliteStore::new(&path)
            .await
            .map_err(|e| anyhow::anyhow!("opening {path}: {e}"))?;
        sim.seed_backend(&sim_account, name, &keys).await?;
    }
    database
        .store
        .create_device(&NewDevice {
            uid: uid.clone(),
            account_id: account.clone(),
            name: name.to_owned(),
            engine: EngineKind::WhatsappWeb,
            limits: SafetyLimits::default(),
            pacing: Pacing::default_for(EngineKind::WhatsappWeb),
            // Nobody uses the MegaMsg API of a benchmark device.
            instance_token_hash: [0u8; 32],
            created_at: wagate_core::time::now(),
            sealed_secret: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating device {uid}: {e}"))?;
    Ok(uid)
}
