//! Operations: whether the server can serve (readiness) and what its devices are doing
//! (metrics samples), for the probes and the scraper.

use super::port::DeviceControl;
use crate::config::{Config, MetricsConfig};
use std::sync::Arc;
use std::time::Duration;
use wagate_core::store::Store;

/// What a sample says about a device (the runtime keeps the counts).
pub use super::port::{DeviceCounters, DeviceSample};

/// How long readiness waits for the database: well under a probe's usual timeout, so a
/// blocked writer reads as "not ready" instead of a hung probe.
pub const READY_WITHIN: Duration = Duration::from_secs(2);

/// Readiness and metrics.
#[derive(Clone)]
pub struct OpsService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    control: Arc<dyn DeviceControl>,
}

impl OpsService {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        control: Arc<dyn DeviceControl>,
    ) -> Self {
        Self {
            config,
            store,
            control,
        }
    }

    /// Whether the database can be read and can commit a write within [`READY_WITHIN`]; the
    /// reason when not. A read alone is not enough: with SQLite in WAL mode reads go on
    /// while nothing can be committed.
    pub async fn readiness(&self) -> Result<(), String> {
        let probe = async {
            self.store.last_event_seq().await?;
            self.store.check_writable().await
        };
        match tokio::time::timeout(READY_WITHIN, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the database did not commit a write within {} s",
                READY_WITHIN.as_secs()
            )),
        }
    }

    /// Every running device's numbers, read now.
    pub fn metric_samples(&self) -> Vec<DeviceSample> {
        self.control.metric_samples()
    }

    /// This node's id: every node serves the metrics of the devices it drives.
    pub fn node_id(&self) -> String {
        self.control.node_id()
    }

    /// Who may scrape, and how detailed the series are.
    pub fn metrics_config(&self) -> &MetricsConfig {
        &self.config.metrics
    }
}
