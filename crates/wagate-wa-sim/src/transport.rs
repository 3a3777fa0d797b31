//! The two ways a client reaches the simulator.
//!
//! * [`SimTransportFactory`]: whatsapp-rust's `TransportFactory`, an in-process byte pipe.
//!   No sockets, so hundreds of clients cost only memory, and tests need no ports.
//! * [`listen`]: a `ws://` loopback listener, for pointing an unmodified running process
//!   (wagate itself) at the simulator with `TokioWebSocketTransportFactory::with_url`.
//!
//! Both feed the same connection task ([`crate::conn::serve`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use whatsapp_rust::async_channel;
use whatsapp_rust::futures::{SinkExt as _, StreamExt as _};
use whatsapp_rust::transport::{DisconnectReason, Transport, TransportEvent, TransportFactory};

use crate::Shared;
use crate::conn::{Outbound, serve};

/// Connects whatsapp-rust clients to the simulator in-process. Cheap to clone; one factory can
/// serve any number of clients (each `create_transport` is a new connection).
#[derive(Clone)]
pub struct SimTransportFactory {
    pub(crate) shared: Arc<Shared>,
    /// The connections this factory opened, so [`SimTransportFactory::sever`] can cut them.
    pub(crate) opened: Arc<Mutex<Vec<Weak<MemTransport>>>>,
    pub(crate) severed: Arc<AtomicBool>,
}

impl SimTransportFactory {
    /// The process using this factory dies (`kill -9`): every connection it opened is cut
    /// at once, as the kernel closes a dead process's sockets, so nothing it would still say
    /// reaches the server, and it opens no new one. A test that "kills" an in-process app
    /// by dropping its runtime needs this first: tasks cancelled by the shutdown wake others
    /// that still run for a moment (a Signal store write cancelled mid-decrypt is answered
    /// with a nack, which makes the server forget the message) — things a dead process
    /// never does.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        let opened = std::mem::take(&mut *self.opened.lock().unwrap_or_else(|p| p.into_inner()));
        for conn in opened.iter().filter_map(Weak::upgrade) {
            conn.to_server
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        }
    }
}

impl std::fmt::Debug for SimTransportFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimTransportFactory")
    }
}

/// Client side of the pipe. Dropping the sender is how the server sees the client hang up.
pub(crate) struct MemTransport {
    to_server: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
}

#[async_trait]
impl Transport for MemTransport {
    async fn send(&self, data: Bytes) -> Result<()> {
        let guard = self.to_server.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx
                .send(data)
                .map_err(|_| anyhow!("simulator closed the connection")),
            None => Err(anyhow!("transport disconnected")),
        }
    }

    async fn disconnect(&self) {
        self.to_server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// Server side of the pipe: server→client bytes become transport events.
struct MemOutbound {
    events: async_channel::Sender<TransportEvent>,
}

impl Outbound for MemOutbound {
    fn data(&self, bytes: Bytes) {
        // Unbounded: `try_send` only fails once the client dropped its receiver.
        let _ = self.events.try_send(TransportEvent::DataReceived(bytes));
    }

    fn close(&self) {
        let _ = self
            .events
            .try_send(TransportEvent::Disconnected(DisconnectReason::StreamEnded));
        self.events.close();
    }
}

#[async_trait]
impl TransportFactory for SimTransportFactory {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
        if self.severed.load(Ordering::SeqCst) {
            return Err(anyhow!("the process using this transport is gone"));
        }
        let (events_tx, events_rx) = async_channel::unbounded();
        let (to_server, from_client) = mpsc::unbounded_channel();
        let _ = events_tx.try_send(TransportEvent::Connected);
        tokio::spawn(serve(
            self.shared.clone(),
            from_client,
            Arc::new(MemOutbound { events: events_tx }),
        ));
        let transport = Arc::new(MemTransport {
            to_server: Mutex::new(Some(to_server)),
        });
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        opened.retain(|c| c.strong_count() > 0);
        opened.push(Arc::downgrade(&transport));
        Ok((transport, events_rx))
    }
}

/// Server→client half of a WebSocket connection, drained by a writer task.
struct WsOutbound {
    tx: mpsc::UnboundedSender<Option<Bytes>>,
}

impl Outbound for WsOutbound {
    fn data(&self, bytes: Bytes) {
        let _ = self.tx.send(Some(bytes));
    }
    fn close(&self) {
        let _ = self.tx.send(None);
    }
}

/// Binds `addr` and serves WebSocket clients until the runtime shuts down.
/// Returns the URL to give `TokioWebSocketTransportFactory::with_url` (path `/ws/chat`).
pub(crate) async fn listen(shared: Arc<Shared>, addr: &str) -> Result<String> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "ws accept failed");
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let ws = match tokio_websockets::ServerBuilder::new().accept(stream).await {
                    Ok((_request, ws)) => ws,
                    Err(e) => {
                        warn!(%peer, error = %e, "ws upgrade failed");
                        return;
                    }
                };
                debug!(%peer, "ws client connected");
                let (mut sink, mut stream) = ws.split();
                let (raw_tx, raw_rx) = mpsc::unbounded_channel();
                let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Option<Bytes>>();
                let writer = tokio::spawn(async move {
                    while let Some(Some(bytes)) = out_rx.recv().await {
                        if sink
                            .send(tokio_websockets::Message::binary(bytes))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    let _ = sink.close().await;
                });
                let reader = tokio::spawn(async move {
                    while let Some(Ok(message)) = stream.next().await {
                        if message.is_binary() || message.is_text() {
                            let payload = Bytes::copy_from_slice(&message.into_payload());
                            if raw_tx.send(payload).is_err() {
                                return;
                            }
                        } else if message.is_close() {
                            return;
                        }
                    }
                });
                serve(shared, raw_rx, Arc::new(WsOutbound { tx: out_tx })).await;
                reader.abort();
                let _ = writer.await;
            });
        }
    });
    Ok(format!("ws://{local}/ws/chat"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Simulator;

    /// A severed factory's connections say nothing more to the server, and it opens none.
    #[tokio::test]
    async fn a_severed_factory_is_silent_and_opens_nothing() {
        let sim = Simulator::new();
        let factory = sim.transport();
        let other = sim.transport();
        let (conn, _events) = factory.create_transport().await.unwrap();
        let (alive, _alive_events) = other.create_transport().await.unwrap();
        conn.send(Bytes::from_static(b"before")).await.unwrap();
        factory.sever();
        assert!(conn.send(Bytes::from_static(b"after")).await.is_err());
        assert!(factory.create_transport().await.is_err());
        // Only that process died.
        alive.send(Bytes::from_static(b"still here")).await.unwrap();
        assert!(other.create_transport().await.is_ok());
    }
}
