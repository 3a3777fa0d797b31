//! Thin wrappers around the protocol client's transport and HTTP client.
//!
//! The protocol client retries failed dials silently (no event), so a device pointed at an
//! unreachable server would look "connecting" forever. Wrapping the transport factory lets
//! the session see every dial and its outcome and report `Reconnecting` with a reason.
//! The HTTP wrapper exists because the builder takes its client by value while the engine
//! shares one client (one connection pool) across all devices.

use async_trait::async_trait;
use std::sync::Arc;
use whatsapp_rust::async_channel;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::wacore::net::{StreamingHttpResponse, UploadBody};

/// What a dial attempt reports to its session.
pub(crate) trait DialObserver: Send + Sync {
    fn dialing(&self);
    fn dial_failed(&self, error: &anyhow::Error);
}

pub(crate) struct ObservedTransport {
    pub(crate) inner: Arc<dyn TransportFactory>,
    pub(crate) observer: Arc<dyn DialObserver>,
}

#[async_trait]
impl TransportFactory for ObservedTransport {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        self.observer.dialing();
        let result = self.inner.create_transport().await;
        if let Err(e) = &result {
            self.observer.dial_failed(e);
        }
        result
    }
}

/// Shares one HTTP client between the bots of all devices.
pub(crate) struct SharedHttp(pub(crate) Arc<dyn HttpClient>);

#[async_trait]
impl HttpClient for SharedHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.0.execute(request).await
    }
    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }
    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }
    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }
    fn execute_upload(
        &self,
        request: HttpRequest,
        body: UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.0.execute_upload(request, body, content_length)
    }
}
