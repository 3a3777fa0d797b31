//! The certificate canary: proves, at run time, that the protocol crate this binary links
//! still checks WhatsApp's Noise server-certificate chain.
//!
//! whatsapp-rust has a `danger-skip-cert-chain-verify` feature (for fake servers such as
//! `wagate-wa-sim`). Cargo unifies features across a build, so one test-support crate in the
//! same build switches the check off for every crate that links whatsapp-rust, the shipped
//! binary included, and nothing at compile time says so. A client without the check
//! accepts any server that answers the handshake: whoever sits between the device and
//! WhatsApp could read and forge its traffic. So before a device talks to WhatsApp the
//! engine builds a certificate chain that is well formed but signed by a key that is not
//! WhatsApp's root, and runs it through the same public function the handshake calls
//! (`HandshakeUtils::verify_server_cert`). A build that accepts it must not connect.

use std::sync::OnceLock;
use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore::noise::{HandshakeError, HandshakeUtils};
use whatsapp_rust::waproto::whatsapp::{self as wa, cert_chain::noise_certificate};

/// What the canary found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertCheck {
    /// A chain not signed by WhatsApp's root was refused: the check is on.
    Enforced,
    /// A forged chain was accepted: this build skips the certificate check.
    Skipped,
    /// The canary could not tell (its forged chain was refused for another reason than its
    /// signature). Treated like `Skipped`: fail closed.
    Inconclusive(String),
}

impl CertCheck {
    pub fn is_enforced(&self) -> bool {
        matches!(self, Self::Enforced)
    }

    /// Why devices may not connect to WhatsApp, for logs and the device's `failed` reason.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Self::Enforced => None,
            Self::Skipped => Some(
                "refusing to connect to WhatsApp: this build of wagate skips WhatsApp's \
                 server-certificate check (whatsapp-rust was built with its \
                 danger-skip-cert-chain-verify feature, which the test simulator \
                 wagate-wa-sim enables; rebuild with `cargo build --release -p wagate`)"
                    .to_owned(),
            ),
            Self::Inconclusive(why) => Some(format!(
                "refusing to connect to WhatsApp: cannot prove that this build checks \
                 WhatsApp's server certificate ({why})"
            )),
        }
    }
}

/// The canary's verdict for this process (the answer cannot change while it runs).
pub fn cert_check() -> &'static CertCheck {
    static VERDICT: OnceLock<CertCheck> = OnceLock::new();
    VERDICT.get_or_init(run_canary)
}

/// Builds a forged chain and asks the handshake's own verification about it.
fn run_canary() -> CertCheck {
    let chain = match forged_chain() {
        Ok(c) => c,
        Err(e) => return CertCheck::Inconclusive(format!("cannot build the test chain: {e}")),
    };
    match HandshakeUtils::verify_server_cert(&chain.bytes, &chain.server_static) {
        Ok(_) => CertCheck::Skipped,
        // The only step that can fail for this chain is the root signature check; any
        // other refusal means the chain itself was off, so the test proved nothing.
        Err(HandshakeError::CertVerification(msg)) if msg.contains("intermediate signature") => {
            CertCheck::Enforced
        }
        Err(e) => CertCheck::Inconclusive(format!("the test chain was refused otherwise: {e}")),
    }
}

struct ForgedChain {
    bytes: Vec<u8>,
    server_static: [u8; 32],
}

/// A chain shaped exactly like WhatsApp's (intermediate issued by serial 0, leaf issued
/// by the intermediate and naming the server's static key, every signature a real
/// XEdDSA signature) except that the intermediate is signed by a fresh key instead of
/// WhatsApp's root. Only the root check can tell it apart.
fn forged_chain() -> Result<ForgedChain, String> {
    let mut rng = rand010::rng();
    let rogue_root = KeyPair::generate(&mut rng);
    let intermediate = KeyPair::generate(&mut rng);
    let server = KeyPair::generate(&mut rng);
    let server_static: [u8; 32] = server
        .public_key
        .public_key_bytes()
        .try_into()
        .map_err(|_| "the server key is not 32 bytes".to_owned())?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let intermediate_details = noise_certificate::Details {
        serial: Some(1),
        issuer_serial: Some(0),
        key: Some(intermediate.public_key.public_key_bytes().to_vec()),
        not_before: Some(now.saturating_sub(3_600)),
        not_after: Some(now + 3_600),
    }
    .encode_to_vec();
    let leaf_details = noise_certificate::Details {
        serial: Some(2),
        issuer_serial: Some(1),
        key: Some(server_static.to_vec()),
        not_before: Some(now.saturating_sub(3_600)),
        not_after: Some(now + 3_600),
    }
    .encode_to_vec();
    let sign = |key: &KeyPair, details: &[u8]| {
        key.calculate_signature(details, &mut rand010::rng())
            .map(|s| s.to_vec())
            .map_err(|e| format!("cannot sign: {e}"))
    };
    let chain = wa::CertChain {
        intermediate: whatsapp_rust::buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
            signature: Some(sign(&rogue_root, &intermediate_details)?),
            details: Some(intermediate_details),
        }),
        leaf: whatsapp_rust::buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
            signature: Some(sign(&intermediate, &leaf_details)?),
            details: Some(leaf_details),
        }),
    };
    Ok(ForgedChain {
        bytes: chain.encode_to_vec(),
        server_static,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::wacore::libsignal::protocol::PublicKey;
    use whatsapp_rust::wacore::noise::WA_CERT_PUB_KEY;

    /// This test target links `wagate-wa-sim`, which turns on
    /// `danger-skip-cert-chain-verify` for the whole build: exactly the situation a plain
    /// workspace build used to ship. The canary must see it.
    #[test]
    fn the_canary_detects_a_build_that_skips_the_certificate_check() {
        assert_eq!(run_canary(), CertCheck::Skipped);
        let why = cert_check().refusal().unwrap();
        assert!(why.contains("danger-skip-cert-chain-verify"), "{why}");
    }

    /// Why an enforcing build refuses the forged chain, step by step with the same
    /// primitives `verify_server_cert` uses when the feature is off: the intermediate's
    /// signature does not verify under WhatsApp's root, while everything else about the
    /// chain is sound (the leaf's signature verifies under the intermediate, and a build
    /// that skips signatures accepts the chain, as the test above shows). So the only
    /// thing that can refuse it is the root check, and `Enforced` means exactly that.
    #[test]
    fn the_forged_chain_fails_only_the_root_signature() {
        let chain = forged_chain().unwrap();
        let decoded = whatsapp_rust::waproto::codec::cert_chain_decode(&chain.bytes).unwrap();
        let inter = decoded.intermediate.as_option().unwrap();
        let leaf = decoded.leaf.as_option().unwrap();
        let root = PublicKey::from_djb_public_key_bytes(&WA_CERT_PUB_KEY).unwrap();
        let inter_details = inter.details.as_deref().unwrap();
        assert!(!root.verify_signature(inter_details, inter.signature.as_deref().unwrap()));
        let inter_key =
            whatsapp_rust::waproto::codec::noise_certificate_details_decode(inter_details)
                .unwrap()
                .key
                .unwrap();
        let inter_pk = PublicKey::from_djb_public_key_bytes(&inter_key).unwrap();
        assert!(inter_pk.verify_signature(
            leaf.details.as_deref().unwrap(),
            leaf.signature.as_deref().unwrap()
        ));
    }
}
