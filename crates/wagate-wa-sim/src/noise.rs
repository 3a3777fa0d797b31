//! The responder half of WhatsApp's Noise XX handshake and the encrypted frame layer after it.
//!
//! Every connection, in-memory or `ws://`, is a plain byte stream; this module turns it into a
//! stream of decrypted binary stanzas. All primitives come from the protocol crate itself
//! (`wacore::handshake`, `wacore::framing`, `wacore_binary`), so the simulator never re-implements
//! crypto or framing and stays byte-compatible with the client it tests.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use whatsapp_rust::buffa::{Message as _, MessageField};
use whatsapp_rust::wacore::framing::{FrameDecoder, encode_frame};
use whatsapp_rust::wacore::handshake::{NoiseCipher, NoiseHandshake};
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore_binary::consts::{NOISE_PATTERN_XX, WA_CONN_HEADER};
use whatsapp_rust::wacore_binary::{Node, OwnedNodeRef, marshal::marshal, util::unpack};
use whatsapp_rust::waproto::whatsapp as wa;

/// The server's long-lived Noise identity and the certificate chain it presents.
pub(crate) struct ServerIdentity {
    static_key: KeyPair,
    cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub(crate) fn generate() -> Self {
        let static_key = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
        let cert_chain = expired_cert_chain(static_key.public_key.public_key_bytes());
        Self {
            static_key,
            cert_chain,
        }
    }
}

/// A certificate chain for `server_static_pub` that already expired.
///
/// Why expired: XX never looks at validity dates, but a client that cached a *valid* chain tries
/// Noise IK on its next connect. An expired chain keeps every reconnect on XX, so the simulator
/// needs only one handshake pattern. The signatures are zero, which is why clients of the
/// simulator need `danger-skip-cert-chain-verify`; the intermediate's `issuer_serial` must still
/// be 0 and the leaf key must equal the server static key, which the client checks regardless.
fn expired_cert_chain(server_static_pub: &[u8]) -> Vec<u8> {
    use wa::cert_chain::{NoiseCertificate, noise_certificate::Details};
    let intermediate = Details {
        serial: Some(1),
        issuer_serial: Some(0),
        key: Some(vec![0xCC; 32]),
        not_before: Some(1_000_000_000),
        not_after: Some(1_600_000_000),
    };
    let leaf = Details {
        serial: Some(2),
        issuer_serial: Some(1),
        key: Some(server_static_pub.to_vec()),
        not_before: Some(1_000_000_000),
        not_after: Some(1_600_000_000),
    };
    wa::CertChain {
        leaf: MessageField::some(NoiseCertificate {
            details: Some(leaf.encode_to_vec()),
            signature: Some(vec![0; 64]),
        }),
        intermediate: MessageField::some(NoiseCertificate {
            details: Some(intermediate.encode_to_vec()),
            signature: Some(vec![0; 64]),
        }),
    }
    .encode_to_vec()
}

/// Raw bytes from the client, before and after the handshake. Buffers partial writes because a
/// transport may split or coalesce frames arbitrarily (WebSocket messages, batched writes).
pub(crate) struct Inbound {
    rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    prologue: Vec<u8>,
    prologue_done: bool,
    frames: FrameDecoder,
}

impl Inbound {
    pub(crate) fn new(rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) -> Self {
        Self {
            rx,
            prologue: Vec::new(),
            prologue_done: false,
            frames: FrameDecoder::new(),
        }
    }

    /// The next complete frame payload, or `None` when the client closed the stream.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.prologue_done
                && let Some(frame) = self.frames.decode_frame()
            {
                return Ok(Some(frame.freeze()));
            }
            let Some(chunk) = self.rx.recv().await else {
                return Ok(None);
            };
            if self.prologue_done {
                self.frames.feed(&chunk);
            } else {
                self.prologue.extend_from_slice(&chunk);
                if let Some(rest) = strip_prologue(&self.prologue)? {
                    self.frames.feed(&rest);
                    self.prologue_done = true;
                    self.prologue = Vec::new();
                }
            }
        }
    }
}

/// Strips the optional edge-routing pre-intro (`ED\0\1` + 3-byte length + routing info) and the
/// `WA` connection header. Returns the bytes after them once enough has arrived.
fn strip_prologue(buf: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut at = 0;
    if buf.starts_with(b"ED") {
        if buf.len() < 7 {
            return Ok(None);
        }
        let len = (usize::from(buf[4]) << 16) | (usize::from(buf[5]) << 8) | usize::from(buf[6]);
        at = 7 + len;
    }
    if buf.len() < at + WA_CONN_HEADER.len() {
        return Ok(None);
    }
    if buf[at..at + WA_CONN_HEADER.len()] != WA_CONN_HEADER {
        bail!("client did not open with the WA connection header");
    }
    Ok(Some(buf[at + WA_CONN_HEADER.len()..].to_vec()))
}

/// The transport keys after a finished handshake. Each direction has its own counter, which is
/// the AES-GCM nonce; they start at 0.
pub(crate) struct Session {
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl Session {
    /// Decrypts one frame into a stanza.
    pub(crate) fn open(&mut self, frame: &[u8]) -> Result<Node> {
        let mut plain = frame.to_vec();
        self.read
            .decrypt_in_place_with_counter(self.read_counter, &mut plain)
            .map_err(|e| anyhow!("frame decryption failed: {e}"))?;
        self.read_counter = self.read_counter.wrapping_add(1);
        let unpacked = unpack(&plain).context("unpacking stanza")?;
        let node = OwnedNodeRef::new(Bytes::copy_from_slice(&unpacked))
            .context("decoding stanza")?
            .to_owned_node();
        Ok(node)
    }

    /// Encrypts one stanza into a length-prefixed frame.
    pub(crate) fn seal(&mut self, node: &Node) -> Result<Bytes> {
        // `marshal` already writes the leading flags byte (0 = uncompressed).
        let plain = marshal(node).context("encoding stanza")?;
        let sealed = self
            .write
            .encrypt_with_counter(self.write_counter, &plain)
            .map_err(|e| anyhow!("frame encryption failed: {e}"))?;
        self.write_counter = self.write_counter.wrapping_add(1);
        Ok(Bytes::from(encode_frame(&sealed, None)?))
    }
}

/// Runs the responder side of XX. `send` writes raw bytes to the client.
/// Returns the transport session and the client's login or registration payload.
pub(crate) async fn accept(
    identity: &ServerIdentity,
    inbound: &mut Inbound,
    send: &(dyn Fn(Bytes) + Send + Sync),
) -> Result<Option<(Session, wa::ClientPayload)>> {
    let Some(hello) = inbound.next_frame().await? else {
        return Ok(None);
    };
    let hello = wa::HandshakeMessage::decode_from_slice(&hello).context("ClientHello")?;
    let client_ephemeral: [u8; 32] = hello
        .client_hello
        .as_option()
        .and_then(|h| h.ephemeral.clone())
        .ok_or_else(|| anyhow!("ClientHello without ephemeral key"))?
        .try_into()
        .map_err(|_| anyhow!("client ephemeral key is not 32 bytes"))?;
    if hello
        .client_hello
        .as_option()
        .is_some_and(|h| h.r#static.is_some())
    {
        // Only IK puts a static key in the hello; the expired cert chain should prevent it.
        bail!("client attempted Noise IK, which the simulator does not implement");
    }

    let mut noise = NoiseHandshake::new(NOISE_PATTERN_XX, &WA_CONN_HEADER)?;
    noise.authenticate(&client_ephemeral);
    let ephemeral = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
    let ephemeral_pub = ephemeral.public_key.public_key_bytes().to_vec();
    noise.authenticate(&ephemeral_pub);
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_ephemeral)?;
    let static_enc = noise.encrypt(identity.static_key.public_key.public_key_bytes())?;
    noise.mix_shared_secret(
        identity.static_key.private_key.serialize(),
        &client_ephemeral,
    )?;
    let payload_enc = noise.encrypt(&identity.cert_chain)?;
    let server_hello = wa::HandshakeMessage {
        server_hello: MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral_pub),
            r#static: Some(static_enc),
            payload: Some(payload_enc),
            ..Default::default()
        }),
        ..Default::default()
    };
    send(Bytes::from(encode_frame(
        &server_hello.encode_to_vec(),
        None,
    )?));

    let Some(finish) = inbound.next_frame().await? else {
        return Ok(None);
    };
    let finish = wa::HandshakeMessage::decode_from_slice(&finish).context("ClientFinish")?;
    let finish = finish
        .client_finish
        .as_option()
        .ok_or_else(|| anyhow!("expected ClientFinish"))?;
    let client_static = noise.decrypt(
        finish
            .r#static
            .as_deref()
            .ok_or_else(|| anyhow!("ClientFinish without static key"))?,
    )?;
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
    let payload = noise.decrypt(
        finish
            .payload
            .as_deref()
            .ok_or_else(|| anyhow!("ClientFinish without payload"))?,
    )?;
    let payload = wa::ClientPayload::decode_from_slice(&payload).context("ClientPayload")?;
    // The initiator writes with the first key, so the responder reads with it.
    let (k1, k2) = noise.finish()?;
    Ok(Some((
        Session {
            read: k1,
            write: k2,
            read_counter: 0,
            write_counter: 0,
        },
        payload,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_waits_for_the_whole_header() {
        assert_eq!(strip_prologue(b"WA").unwrap(), None);
        let mut with_rest = WA_CONN_HEADER.to_vec();
        with_rest.extend_from_slice(&[0, 0, 1, 9]);
        assert_eq!(strip_prologue(&with_rest).unwrap(), Some(vec![0, 0, 1, 9]));
    }

    #[test]
    fn prologue_skips_edge_routing_preintro() {
        let mut buf = b"ED\0\x01".to_vec();
        buf.extend_from_slice(&[0, 0, 2, 0xAA, 0xBB]);
        buf.extend_from_slice(&WA_CONN_HEADER);
        buf.push(7);
        assert_eq!(strip_prologue(&buf).unwrap(), Some(vec![7]));
    }

    #[test]
    fn prologue_rejects_other_protocols() {
        assert!(strip_prologue(b"GET / HTTP/1.1").is_err());
    }

    #[test]
    fn cert_chain_is_expired_so_clients_never_try_ik() {
        use whatsapp_rust::wacore::handshake::HandshakeUtils;
        let key = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
        let public: [u8; 32] = key.public_key.public_key_bytes().try_into().unwrap();
        let chain = expired_cert_chain(&public);
        // Accepted as a chain (signatures are skipped by the danger feature)...
        let verified = HandshakeUtils::verify_server_cert(&chain, &public).unwrap();
        // ...but already expired.
        assert!(verified.leaf_not_after < crate::stanza::now_secs());
    }
}
