//! Thin wrappers around the protocol client's transport and HTTP client.
//!
//! The protocol client retries failed dials and handshakes silently (no event), so a device
//! pointed at an unreachable or misbehaving server would look "connecting" forever.
//! Wrapping the transport factory lets the session see every dial, its outcome and how the
//! connection ended, and report `Reconnecting` with a reason.
//! The HTTP wrapper exists because the builder takes its client by value while the engine
//! shares one client (one connection pool) across all devices.

use async_trait::async_trait;
use std::sync::Arc;
use whatsapp_rust::async_channel;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::transport::{DisconnectReason, Transport, TransportEvent, TransportFactory};
use whatsapp_rust::wacore::net::{StreamingHttpResponse, UploadBody};

/// What a dial attempt reports to its session.
pub(crate) trait DialObserver: Send + Sync {
    fn dialing(&self);
    fn dial_failed(&self, error: &anyhow::Error);
    /// The connection reported its end (before the client itself noticed).
    fn closed(&self, reason: &DisconnectReason);
}

/// Reports a dial that never finished (the client's 20 s connect timeout dropped it).
struct DialGuard<'a> {
    observer: &'a dyn DialObserver,
    done: bool,
}

impl Drop for DialGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.observer
                .dial_failed(&anyhow::anyhow!("the connection attempt timed out"));
        }
    }
}

/// Asked before every dial, the protocol client's own reconnects included.
#[async_trait]
pub(crate) trait DialGate: Send + Sync {
    /// `Err(why)` refuses the dial (it is reported as a failed dial).
    async fn may_dial(&self) -> Result<(), String>;
}

pub(crate) struct ObservedTransport {
    pub(crate) inner: Arc<dyn TransportFactory>,
    pub(crate) observer: Arc<dyn DialObserver>,
    /// A node that lost the device must not connect it: its login would replace the
    /// connection of the node that took the device over.
    pub(crate) gate: Arc<dyn DialGate>,
}

#[async_trait]
impl TransportFactory for ObservedTransport {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        if let Err(why) = self.gate.may_dial().await {
            let e = anyhow::anyhow!(why);
            self.observer.dial_failed(&e);
            return Err(e);
        }
        self.observer.dialing();
        let mut guard = DialGuard {
            observer: self.observer.as_ref(),
            done: false,
        };
        let result = self.inner.create_transport().await;
        guard.done = true;
        let (transport, events) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.observer.dial_failed(&e);
                return Err(e);
            }
        };
        // Relay the transport's events so the session learns how the connection ended
        // even when it ends inside the handshake, where the client reports nothing.
        let (tx, rx) = async_channel::unbounded();
        let observer = self.observer.clone();
        tokio::spawn(async move {
            while let Ok(ev) = events.recv().await {
                if let TransportEvent::Disconnected(reason) = &ev {
                    observer.closed(reason);
                }
                if tx.send(ev).await.is_err() {
                    // The client dropped the connection itself.
                    break;
                }
            }
        });
        Ok((transport, rx))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl DialObserver for Log {
        fn dialing(&self) {
            self.0.lock().unwrap().push("dialing".into());
        }
        fn dial_failed(&self, error: &anyhow::Error) {
            self.0.lock().unwrap().push(format!("failed: {error}"));
        }
        fn closed(&self, reason: &DisconnectReason) {
            self.0.lock().unwrap().push(format!("closed: {reason}"));
        }
    }

    struct Nothing;

    #[async_trait]
    impl Transport for Nothing {
        async fn send(&self, _data: bytes::Bytes) -> anyhow::Result<()> {
            Ok(())
        }
        async fn disconnect(&self) {}
    }

    /// Connects, delivers one frame, then the peer hangs up.
    struct HangsUp;

    #[async_trait]
    impl TransportFactory for HangsUp {
        async fn create_transport(
            &self,
        ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
            let (tx, rx) = async_channel::unbounded();
            tx.send(TransportEvent::Connected).await?;
            tx.send(TransportEvent::DataReceived(bytes::Bytes::from_static(
                b"x",
            )))
            .await?;
            tx.send(TransportEvent::Disconnected(DisconnectReason::StreamEnded))
                .await?;
            Ok((Arc::new(Nothing), rx))
        }
    }

    struct Refuses;

    #[async_trait]
    impl TransportFactory for Refuses {
        async fn create_transport(
            &self,
        ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
            anyhow::bail!("connection refused")
        }
    }

    struct Hangs;

    #[async_trait]
    impl TransportFactory for Hangs {
        async fn create_transport(
            &self,
        ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
            std::future::pending().await
        }
    }

    struct Gate(Result<(), String>);

    #[async_trait]
    impl DialGate for Gate {
        async fn may_dial(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    /// A node that lost the device does not even dial: the refusal is reported as a
    /// failed dial, and the server is never reached.
    #[tokio::test]
    async fn a_closed_gate_refuses_the_dial() {
        let log = Arc::new(Log::default());
        let refused = ObservedTransport {
            inner: Arc::new(HangsUp),
            observer: log.clone(),
            gate: Arc::new(Gate(Err("taken over".into()))),
        }
        .create_transport()
        .await;
        assert!(refused.is_err());
        assert_eq!(*log.0.lock().unwrap(), ["failed: taken over"]);
    }

    #[tokio::test]
    async fn reports_dials_failures_timeouts_and_hangups() {
        let log = Arc::new(Log::default());
        let observed = |inner: Arc<dyn TransportFactory>| ObservedTransport {
            inner,
            observer: log.clone(),
            gate: Arc::new(Gate(Ok(()))),
        };

        let (_t, rx) = observed(Arc::new(HangsUp))
            .create_transport()
            .await
            .unwrap();
        // Every event still reaches the client, in order.
        assert!(matches!(
            rx.recv().await.unwrap(),
            TransportEvent::Connected
        ));
        assert!(matches!(
            rx.recv().await.unwrap(),
            TransportEvent::DataReceived(_)
        ));
        assert!(matches!(
            rx.recv().await.unwrap(),
            TransportEvent::Disconnected(_)
        ));

        assert!(
            observed(Arc::new(Refuses))
                .create_transport()
                .await
                .is_err()
        );

        let timed_out = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            observed(Arc::new(Hangs)).create_transport(),
        )
        .await;
        assert!(timed_out.is_err());

        let log = log.0.lock().unwrap().clone();
        assert_eq!(log[0], "dialing");
        assert!(log[1].starts_with("closed: "), "{log:?}");
        assert_eq!(log[2], "dialing");
        assert_eq!(log[3], "failed: connection refused");
        assert_eq!(log[4], "dialing");
        assert_eq!(log[5], "failed: the connection attempt timed out");
    }
}
