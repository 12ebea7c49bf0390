//! TLS at run time: rustls (aws-lc-rs) server configurations for the filter chains that
//! terminate TLS, built from the chain's context and the snapshot's SDS secrets once per
//! (chain, secrets generation) and shared by every connection; and the checks Envoy makes
//! on the peer's certificate beyond the chain (`match_typed_subject_alt_names`).
//!
//! A new secret (rotation) means a new generation: new connections get a configuration
//! with the new certificate, connections already up keep theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub mod client;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::tls::{CertKey, DownstreamTls, SanKind, SanMatch, Source, Validation};
use crate::config::Snapshot;

/// Why a chain's TLS cannot be served (the connection is closed; the text is logged).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("SDS secret {0:?} has not arrived (the listener is still warming)")]
    MissingSecret(String),
    #[error("SDS secret {0:?} holds no {1}")]
    WrongSecret(String, &'static str),
    #[error("the certificate chain is not PEM: {0}")]
    Certificates(String),
    #[error("the private key is not PEM (PKCS#8, PKCS#1 or SEC1): {0}")]
    Key(String),
    #[error("the trusted CA bundle holds no usable certificate")]
    NoTrustedCa,
    #[error("{0}")]
    Rustls(String),
}

/// Server configurations by (context address, secrets generation, with ALPN).
#[derive(Default)]
pub struct ServerConfigs {
    built: Mutex<HashMap<(usize, u64, bool), Arc<ServerConfig>>>,
}

impl std::fmt::Debug for ServerConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerConfigs")
    }
}

impl ServerConfigs {
    /// The configuration for `tls` under `snap`'s secrets, for a client that offered
    /// `client_alpn`. When none of the client's protocols is one the context offers, the
    /// handshake goes on without ALPN, as Envoy's (BoringSSL's) does; rustls would refuse it.
    pub fn get(
        &self,
        tls: &Arc<DownstreamTls>,
        snap: &Snapshot,
        client_alpn: Option<&[&[u8]]>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let overlap = client_alpn
            .is_none_or(|offered| offered.iter().any(|p| tls.alpn.iter().any(|a| a == p)));
        let with_alpn = !tls.alpn.is_empty() && overlap;
        let key = (
            Arc::as_ptr(tls) as usize,
            snap.secrets_generation,
            with_alpn,
        );
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = built.get(&key) {
            return Ok(c.clone());
        }
        let mut config = server_config(tls, snap)?;
        if !with_alpn {
            config.alpn_protocols.clear();
        }
        let config = Arc::new(config);
        // Old generations and removed chains: forget them now and then (a lookup keyed by
        // a stale address can only miss, never match another chain).
        if built.len() > 256 {
            built.clear();
        }
        built.insert(key, config.clone());
        Ok(config)
    }
}

fn cert_key(src: &Source<CertKey>, snap: &Snapshot) -> Result<Arc<CertKey>, TlsError> {
    match src {
        Source::Inline(c) => Ok(c.clone()),
        Source::Sds(name) => snap
            .secret(name)
            .ok_or_else(|| TlsError::MissingSecret(name.clone()))?
            .cert
            .clone()
            .ok_or_else(|| TlsError::WrongSecret(name.clone(), "certificate")),
    }
}

fn validation(src: &Source<Validation>, snap: &Snapshot) -> Result<Arc<Validation>, TlsError> {
    match src {
        Source::Inline(v) => Ok(v.clone()),
        Source::Sds(name) => snap
            .secret(name)
            .ok_or_else(|| TlsError::MissingSecret(name.clone()))?
            .validation
            .clone()
            .ok_or_else(|| TlsError::WrongSecret(name.clone(), "validation context")),
    }
}

pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificates(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificates("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

pub(crate) fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(TlsError::NoTrustedCa);
    }
    Ok(roots)
}

fn server_config(tls: &DownstreamTls, snap: &Snapshot) -> Result<ServerConfig, TlsError> {
    let ck = cert_key(&tls.cert, snap)?;
    let chain = certificates(&ck.chain)?;
    let key = PrivateKeyDer::from_pem_slice(&ck.key).map_err(|e| TlsError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let validation = tls
        .validation
        .as_ref()
        .map(|v| validation(v, snap))
        .transpose()?;
    let builder = match validation.filter(|v| !v.trusted_ca.is_empty()) {
        Some(v) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(&v.trusted_ca)?),
                provider,
            );
            let verifier = if tls.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = tls.alpn.clone();
    Ok(config)
}

/// The SAN matchers a chain's peer certificate must pass (from its validation context).
pub fn san_matchers<'a>(tls: &'a DownstreamTls, snap: &'a Snapshot) -> Vec<&'a SanMatch> {
    let mut out: Vec<&SanMatch> = tls.extra_sans.iter().collect();
    match &tls.validation {
        Some(Source::Inline(v)) => out.extend(v.sans.iter()),
        Some(Source::Sds(name)) => {
            if let Some(v) = snap.secret(name).and_then(|s| s.validation.as_ref()) {
                out.extend(v.sans.iter());
            }
        }
        None => {}
    }
    out
}

/// The peer certificate's SANs, and its first URI SAN (the SPIFFE identity).
pub fn peer_sans(leaf: &CertificateDer<'_>) -> Vec<(SanKind, String)> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((SanKind::Dns, d.to_string())),
            GeneralName::URI(u) => Some((SanKind::Uri, u.to_string())),
            GeneralName::RFC822Name(e) => Some((SanKind::Email, e.to_string())),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            }
            .map(|ip| (SanKind::Ip, ip)),
            _ => None,
        })
        .collect()
}

/// Whether the peer's SANs pass the matchers (any matcher, as Envoy's list is "any of").
pub fn sans_pass(matchers: &[&SanMatch], sans: &[(SanKind, String)]) -> bool {
    matchers.is_empty()
        || matchers
            .iter()
            .any(|m| sans.iter().any(|(k, v)| *k == m.kind && m.value.matches(v)))
}
