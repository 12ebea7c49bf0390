//! The proxy's own identity (Istio's node agent, in process): an ECDSA P-256 key made here
//! and never sent anywhere, a CSR for `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` sent to the
//! CA (Istio's CSR API, over TLS), and the answer installed as the `default` (certificate
//! chain and key) and `ROOTCA` (the mesh root) secrets, which win over SDS secrets of those
//! names. The certificate is renewed at half its (remaining) lifetime, with up to 10% jitter so a fleet
//! started together does not renew together; when the CA cannot be reached the current
//! certificate stays in use until it expires while renewal is retried with exponential
//! backoff (1 s doubling to 60 s). New connections use the new certificate; connections
//! already up keep theirs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spar_ca::client::{generate_csr, CaClient, ClientError};
use spar_ca::SpiffeId;

use crate::config::tls::{CertKey, SecretData, Validation};
use crate::config::Store;

/// Where the CA is and how to prove who we are to it.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// `https://host:port` (the control plane's CA port, 15012 by default).
    pub ca_addr: String,
    /// The CA's root certificate (PEM), to trust its serving certificate.
    pub ca_root_pem: String,
    /// The name the CA's serving certificate carries (`istiod.istio-system.svc`, `localhost`).
    pub ca_server_name: String,
    /// A bearer token the CA maps to this identity; renewals present the current
    /// certificate instead when there is none.
    pub token: Option<String>,
    pub id: SpiffeId,
    /// The lifetime to ask for; zero: the CA's default.
    pub ttl: Duration,
}

/// Why one certificate request failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate request to the CA: {0}")]
    Ca(#[from] ClientError),
    #[error("the CA answered with an empty certificate chain")]
    EmptyChain,
    #[error("the CA's certificate cannot be read: {0}")]
    BadCertificate(String),
}

/// The certificate the proxy holds.
struct Held {
    chain: String,
    key: String,
    not_after: SystemTime,
}

/// Obtains a certificate and installs it, then keeps it renewed; runs until aborted.
pub async fn run(store: Arc<Store>, opts: IdentityOptions) {
    let mut held: Option<Held> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        match request(&opts, held.as_ref()).await {
            Ok((h, root)) => {
                install(&store, &h, &root);
                tracing::info!(
                    id = %opts.id,
                    expires_in_s = h.not_after.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
                    "workload certificate installed"
                );
                let wait = renew_after(h.not_after).max(Duration::from_secs(1));
                held = Some(h);
                backoff = Duration::from_secs(1);
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                let left = held
                    .as_ref()
                    .and_then(|h| h.not_after.duration_since(SystemTime::now()).ok());
                tracing::warn!(
                    id = %opts.id,
                    current_valid_for_s = left.map(|d| d.as_secs()),
                    retry_in_ms = backoff.as_millis() as u64,
                    "{e}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Half of what is left of the lifetime, minus up to 10% jitter. Counted from now, not from
/// `notBefore`: CAs backdate certificates for clock skew (Spar's by 60 s), which for short
/// lifetimes would put "half the lifetime" in the past.
fn renew_after(not_after: SystemTime) -> Duration {
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    (left / 2).saturating_sub(left.mul_f64(fastrand::f64() * 0.1))
}

async fn request(
    opts: &IdentityOptions,
    current: Option<&Held>,
) -> Result<(Held, String), IdentityError> {
    let (csr, key) = generate_csr(&opts.id).map_err(IdentityError::Ca)?;
    // Renewals prove the identity with the certificate being renewed when there is no token.
    let identity = match (&opts.token, current) {
        (None, Some(h)) => Some((h.chain.clone(), h.key.clone())),
        _ => None,
    };
    let mut client = CaClient::connect(
        &opts.ca_addr,
        &opts.ca_root_pem,
        &opts.ca_server_name,
        identity,
    )
    .await?;
    let chain = client
        .create_certificate(csr, opts.ttl, opts.token.as_deref())
        .await?;
    let (leaf, root) = match chain.as_slice() {
        [] => return Err(IdentityError::EmptyChain),
        [only] => (only.clone(), only.clone()),
        [.., root] => (chain[..chain.len() - 1].concat(), root.clone()),
    };
    let der = spar_ca::client::chain_der(std::slice::from_ref(&chain[0]))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der[0].as_ref())
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    Ok((
        Held {
            chain: leaf,
            key,
            not_after: time(cert.validity().not_after),
        },
        root,
    ))
}

fn install(store: &Store, h: &Held, root: &str) {
    store.set_local_secrets(vec![
        (
            "default".to_string(),
            SecretData {
                cert: Some(Arc::new(CertKey {
                    chain: h.chain.clone().into_bytes(),
                    key: h.key.clone().into_bytes(),
                })),
                validation: None,
            },
        ),
        (
            "ROOTCA".to_string(),
            SecretData {
                cert: None,
                validation: Some(Arc::new(Validation {
                    trusted_ca: root.as_bytes().to_vec(),
                    sans: Vec::new(),
                })),
            },
        ),
    ]);
}
