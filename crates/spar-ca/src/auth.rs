//! Who is calling the CA: authenticators turn a request's credentials into the one identity
//! the caller may obtain a certificate for.
//!
//! [`Authenticator`] is a trait so that Kubernetes TokenReview can slot in next to the local
//! ones: [`StaticTokens`] (per-workload bearer tokens that `spar up` hands out) and
//! [`PeerCertificate`] (a workload renewing with the SVID it already holds). [`AnyOf`] tries
//! several in order.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use rustls_pki_types::{CertificateDer, UnixTime};
use thiserror::Error;
use tonic::metadata::MetadataMap;

use crate::spiffe::{SpiffeId, SpiffeIdError};
use crate::svid::{verify_svid, SvidError};

/// Why a caller could not be authenticated.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("no credentials: send `authorization: Bearer <token>` or a client certificate")]
    NoCredentials,
    #[error("the authorization header is not `Bearer <token>`")]
    MalformedAuthorization,
    #[error("the bearer token is not known to this CA")]
    UnknownToken,
    #[error("the client certificate is not a valid SVID: {0}")]
    BadPeerCertificate(#[from] SvidError),
    #[error("reading the token file {path}: {source}")]
    ReadTokens {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason} (expected `<token> <namespace>/<service-account>`)")]
    TokenLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}:{line}: {source}")]
    TokenIdentity {
        path: PathBuf,
        line: usize,
        source: SpiffeIdError,
    },
}

/// What the CA knows about a call: its gRPC metadata and the TLS client certificates.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub metadata: &'a MetadataMap,
    /// Leaf first, as presented in the TLS handshake; `None` without a client certificate.
    pub peer_certs: Option<&'a [CertificateDer<'static>]>,
}

/// Turns a caller's credentials into its identity.
pub trait Authenticator: Send + Sync {
    /// A short name for logs ("token", "peer-certificate", ...).
    fn name(&self) -> &'static str;

    /// The identity the caller proved, or [`AuthError::NoCredentials`] when it presented
    /// nothing this authenticator understands.
    fn authenticate(&self, caller: &Caller<'_>) -> Result<SpiffeId, AuthError>;
}

/// Bearer tokens mapped to identities. Tokens are kept only as SHA-256 digests, so a lookup
/// takes the same time whatever prefix of a real token an attacker guessed.
#[derive(Default)]
pub struct StaticTokens {
    by_digest: HashMap<[u8; 32], SpiffeId>,
}

// === impl StaticTokens ===

impl StaticTokens {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, token: &str, id: SpiffeId) {
        self.by_digest.insert(token_digest(token), id);
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Reads `<token> <namespace>/<service-account>` lines (`#` starts a comment).
    pub fn load(path: &Path, trust_domain: &str) -> Result<Self, AuthError> {
        let text = fs::read_to_string(path).map_err(|source| AuthError::ReadTokens {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tokens = Self::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: &str| AuthError::TokenLine {
                path: path.to_path_buf(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let mut fields = line.split_whitespace();
            let (Some(token), Some(who), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("wrong number of fields"));
            };
            let (ns, sa) = who
                .split_once('/')
                .ok_or_else(|| bad("identity is not namespace/service-account"))?;
            let id =
                SpiffeId::new(trust_domain, ns, sa).map_err(|source| AuthError::TokenIdentity {
                    path: path.to_path_buf(),
                    line: i + 1,
                    source,
                })?;
            tokens.insert(token, id);
        }
        Ok(tokens)
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Authenticator for StaticTokens {
    fn name(&self) -> &'static str {
        "token"
    }

    fn authenticate(&self, caller: &Caller<'_>) -> Result<SpiffeId, AuthError> {
        let Some(value) = caller.metadata.get("authorization") else {
            return Err(AuthError::NoCredentials);
        };
        let value = value
            .to_str()
            .map_err(|_| AuthError::MalformedAuthorization)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MalformedAuthorization)?;
        self.by_digest
            .get(&token_digest(token))
            .cloned()
            .ok_or(AuthError::UnknownToken)
    }
}

/// A caller that presents a valid SVID as its TLS client certificate gets the same identity
/// again (certificate rotation).
pub struct PeerCertificate {
    roots: Vec<CertificateDer<'static>>,
    trust_domain: String,
}

impl PeerCertificate {
    pub fn new(roots: Vec<CertificateDer<'static>>, trust_domain: &str) -> Self {
        Self {
            roots,
            trust_domain: trust_domain.to_string(),
        }
    }
}

impl Authenticator for PeerCertificate {
    fn name(&self) -> &'static str {
        "peer-certificate"
    }

    fn authenticate(&self, caller: &Caller<'_>) -> Result<SpiffeId, AuthError> {
        match caller.peer_certs {
            None | Some([]) => Err(AuthError::NoCredentials),
            Some(chain) => Ok(verify_svid(
                chain,
                &self.roots,
                &self.trust_domain,
                UnixTime::now(),
            )?),
        }
    }
}

/// Tries each authenticator in turn; the first that recognises a credential decides. A
/// credential that is present but wrong is refused rather than skipped, so a bad token is
/// never rescued by a fallback.
pub struct AnyOf(pub Vec<Box<dyn Authenticator>>);

impl Authenticator for AnyOf {
    fn name(&self) -> &'static str {
        "any-of"
    }

    fn authenticate(&self, caller: &Caller<'_>) -> Result<SpiffeId, AuthError> {
        for a in &self.0 {
            match a.authenticate(caller) {
                Err(AuthError::NoCredentials) => continue,
                other => return other,
            }
        }
        Err(AuthError::NoCredentials)
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
