//! The conformance suite against wacore's in-memory backend: the reference the other
//! backends are held to.

use std::sync::Arc;

use wagate_wa_storage::conformance::CASES;
use whatsapp_rust::wacore::store::InMemoryBackend;

#[tokio::test]
async fn in_memory_backend_passes_the_conformance_suite() {
    for (name, case) in CASES {
        eprintln!("conformance: {name}");
        case(Arc::new(InMemoryBackend::new())).await;
    }
}
