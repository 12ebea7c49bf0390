//! Workload identity over xDS, for proxies that cannot make their own (real Envoy, which
//! istiod's sidecars get from pilot-agent): on the authenticated port, each connection is
//! sent its own `default` secret (a key and an SVID for the identity the caller proved) and
//! `ROOTCA` (the mesh trust bundle) over SDS, and both are renewed at half the
//! certificate's lifetime and pushed like any other change.
//!
//! The plaintext port never sends these: there the caller has proved nothing. Who a caller
//! is and how certificates are made belong to the CA; [`WorkloadIdentity`] is the seam.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};
use spar_translate::type_url;
use tokio::time::Instant;
use tonic::Status;

use crate::resources::{encode_one, Encoded, TypeResources};

/// The SDS name of the workload's certificate and key, as Istio's proxies ask for it.
pub const DEFAULT_SECRET: &str = "default";
/// The SDS name of the trust bundle.
pub const ROOT_SECRET: &str = "ROOTCA";

/// When a renewal fails, how long until the next try (the current certificate stays).
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// A certificate issued for a connection's identity.
pub struct Issued {
    /// Leaf first, then intermediates (PEM).
    pub chain_pem: String,
    /// The private key (PEM, PKCS#8).
    pub key_pem: String,
    /// Every root the mesh trusts (PEM).
    pub roots_pem: String,
    /// How long the certificate is valid for.
    pub lifetime: Duration,
}

/// Authenticates callers of the secure xDS port and issues their certificates.
pub trait WorkloadIdentity: Send + Sync + 'static {
    /// The SPIFFE ID the caller proved (by bearer token or client certificate), or
    /// `UNAUTHENTICATED`. `extensions` carry the TLS connection's peer certificates.
    fn authenticate(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<String, Status>;

    /// A fresh key and certificate for `identity`.
    fn issue(&self, identity: &str) -> Result<Issued, Status>;

    /// The trust bundle now, when it can change between certificates (extra roots added
    /// for a root rotation): connections re-send `ROOTCA` at the next push when it differs.
    fn trust_bundle(&self) -> Option<String> {
        None
    }
}

/// Who a connection on the secure port is, and what it was issued.
pub(crate) struct OwnSecrets {
    issuer: Arc<dyn WorkloadIdentity>,
    identity: String,
    secrets: Arc<TypeResources>,
    /// The trust bundle `ROOTCA` carries now.
    roots_pem: String,
    renew_at: Instant,
}

impl OwnSecrets {
    pub(crate) fn issue(
        issuer: Arc<dyn WorkloadIdentity>,
        identity: String,
    ) -> Result<Self, Status> {
        let mut own = OwnSecrets {
            issuer,
            identity,
            secrets: Arc::default(),
            roots_pem: String::new(),
            renew_at: Instant::now(),
        };
        own.renew()?;
        Ok(own)
    }

    pub(crate) fn identity(&self) -> &str {
        &self.identity
    }

    /// When [`Self::renew`] is due.
    pub(crate) fn renew_at(&self) -> Instant {
        self.renew_at
    }

    /// Issues a new certificate; on failure the current one stays and a retry is scheduled.
    pub(crate) fn renew(&mut self) -> Result<(), Status> {
        let issued = match self.issuer.issue(&self.identity) {
            Ok(i) => i,
            Err(status) => {
                self.renew_at = Instant::now() + RETRY_AFTER;
                return Err(status);
            }
        };
        let mut map = TypeResources::new();
        for s in secrets(&issued) {
            map.insert(
                Arc::from(s.name.as_str()),
                Arc::new(encode_one(type_url::SECRET, &s)),
            );
        }
        self.secrets = Arc::new(map);
        self.roots_pem = issued.roots_pem;
        self.renew_at = Instant::now() + issued.lifetime / 2;
        tracing::debug!(identity = %self.identity, lifetime_s = issued.lifetime.as_secs(), "issued workload certificate over SDS");
        Ok(())
    }

    /// Takes the issuer's current trust bundle into `ROOTCA`; true when it changed.
    pub(crate) fn refresh_roots(&mut self) -> bool {
        let Some(bundle) = self.issuer.trust_bundle() else {
            return false;
        };
        if bundle == self.roots_pem {
            return false;
        }
        let root = root_secret(&bundle);
        Arc::make_mut(&mut self.secrets).insert(
            Arc::from(ROOT_SECRET),
            Arc::new(encode_one(type_url::SECRET, &root)),
        );
        tracing::info!(identity = %self.identity, "trust bundle changed; re-sending ROOTCA");
        self.roots_pem = bundle;
        true
    }

    /// The namespace of the SPIFFE ID (`spiffe://<td>/ns/<ns>/sa/<sa>`).
    fn namespace(&self) -> Option<&str> {
        let path = self.identity.strip_prefix("spiffe://")?.split_once('/')?.1;
        path.strip_prefix("ns/")?.split('/').next()
    }
}

/// What one connection is sent of its node class's output `base`.
///
/// Secrets in the class output are gateway certificates (`credentialName`) read from the
/// node's namespace: keys, so, as istiod does, they go only to a caller authenticated as an
/// identity of that namespace, never over the plaintext port. An authenticated connection
/// also gets its own `default` and `ROOTCA`, which win over secrets of those names.
pub(crate) fn for_connection(
    base: &Arc<Encoded>,
    own: Option<&OwnSecrets>,
    node_namespace: &str,
) -> Arc<Encoded> {
    let class_secrets = base.of(type_url::SECRET).is_some_and(|s| !s.is_empty());
    let entitled = own.is_some_and(|o| o.namespace() == Some(node_namespace));
    if own.is_none() && !class_secrets {
        return base.clone();
    }
    let mut out = (**base).clone();
    out.changes.remove(type_url::SECRET);
    let secrets = out.types.entry(type_url::SECRET).or_default();
    if class_secrets && !entitled {
        if own.is_none() {
            tracing::debug!(
                "gateway secrets are sent only over the authenticated port (--ca-addr)"
            );
        }
        *secrets = Arc::default();
    }
    if let Some(o) = own {
        let m = Arc::make_mut(secrets);
        for (n, r) in o.secrets.iter() {
            m.insert(n.clone(), r.clone());
        }
    }
    Arc::new(out)
}

fn inline(bytes: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(
            bytes.as_bytes().to_vec(),
        )),
        ..Default::default()
    })
}

/// The `default` and `ROOTCA` secrets, shaped as pilot-agent's SDS server sends them.
fn secrets(issued: &Issued) -> [Secret; 2] {
    [
        Secret {
            name: DEFAULT_SECRET.to_string(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&issued.chain_pem),
                private_key: inline(&issued.key_pem),
                ..Default::default()
            })),
        },
        root_secret(&issued.roots_pem),
    ]
}

/// `ROOTCA`: the trust bundle as a validation context.
fn root_secret(roots_pem: &str) -> Secret {
    Secret {
        name: ROOT_SECRET.to_string(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: inline(roots_pem),
                ..Default::default()
            },
        )),
    }
}

/// Completes at the connection's renewal time; never without secrets of its own.
pub(crate) async fn renewal(own: Option<&OwnSecrets>) {
    match own {
        Some(o) => tokio::time::sleep_until(o.renew_at()).await,
        None => std::future::pending().await,
    }
}
