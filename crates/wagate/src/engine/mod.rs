//! The engines this binary can drive devices with, by kind.
//!
//! The sandbox lives here; the whatsapp-web engine lives in its own crate because the
//! protocol crate is slow to build and its upgrades should touch one place.

pub mod cloud;
pub mod sandbox;
mod sandbox_groups;
mod sandbox_journal;
mod sandbox_wire;

use std::collections::HashMap;
use std::sync::Arc;
use wagate_core::device::EngineKind;
use wagate_core::engine::Engine;

/// The engines available to devices.
#[derive(Clone, Default)]
pub struct Engines {
    by_kind: HashMap<EngineKind, Arc<dyn Engine>>,
}

impl Engines {
    pub fn with(mut self, engine: Arc<dyn Engine>) -> Self {
        self.by_kind.insert(engine.kind(), engine);
        self
    }

    pub fn get(&self, kind: EngineKind) -> Option<&Arc<dyn Engine>> {
        self.by_kind.get(&kind)
    }

    pub fn kinds(&self) -> Vec<EngineKind> {
        let mut k: Vec<_> = self.by_kind.keys().copied().collect();
        k.sort_by_key(|k| k.as_str());
        k
    }
}
