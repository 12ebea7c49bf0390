//! The signing authority: a root (self-signed, or plugged in with an intermediate) and its
//! key, and the one operation that matters, turning an authenticated caller's CSR into an
//! X.509-SVID for exactly that caller.
//!
//! Every field of the leaf is decided here, never copied from the CSR: one URI SAN (the
//! caller's SPIFFE ID), not a CA, digitalSignature (+keyEncipherment for RSA keys),
//! serverAuth+clientAuth, validity from a minute ago to `ttl` from now, capped by the signing
//! certificate's own expiry.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
#[cfg(test)]
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::{CertificateDer, UnixTime};
use thiserror::Error;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::csr::{CsrError, KeyKind, RequestedName, VerifiedCsr};
use crate::spiffe::{validate_trust_domain, SpiffeId, SpiffeIdError};
use crate::svid::{verify_svid, SvidError};

/// Istio's plug-in CA file names (the `cacerts` secret layout).
pub const CA_CERT_FILE: &str = "ca-cert.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";

/// How long a generated self-signed root is valid (Istio's default: ten years).
pub const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Leaves start this long before "now", so peers with a slightly slow clock accept them.
const BACKDATE: Duration = Duration::from_secs(60);

/// Why the CA could not be set up or could not sign.
#[derive(Debug, Error)]
pub enum CaError {
    #[error("reading {path}: {source} (check that the file exists and is readable)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no usable PEM certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "{path} holds no usable private key: {reason} (PKCS#8, SEC1 or PKCS#1 PEM, unencrypted)"
    )]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "{cert} is not a CA certificate (basicConstraints CA:TRUE is required to sign workloads)"
    )]
    NotCa { cert: PathBuf },
    #[error("{key} does not hold the private key of {cert}; plug in the matching pair")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the plugged-in CA files in {dir} do not chain to root-cert.pem: {source}")]
    BrokenChain {
        dir: PathBuf,
        source: Box<SvidError>,
    },
    #[error(transparent)]
    TrustDomain(#[from] SpiffeIdError),
    #[error("the caller is {caller}, but this CA signs for trust domain {ca:?}")]
    WrongTrustDomain { caller: SpiffeId, ca: String },
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("the CSR asks for {requested}, but the caller is {caller}: a workload may only request its own identity")]
    NotEntitled { requested: String, caller: SpiffeId },
    #[error("the signing certificate expired at {0}; rotate the CA")]
    CaExpired(OffsetDateTime),
    #[error("building the certificate failed: {0}")]
    Build(#[from] rcgen::Error),
    #[error("the system random generator failed")]
    Random,
}

/// A signed leaf and the chain to send with it: leaf first, intermediates, root last
/// (`IstioCertificateResponse.cert_chain` order).
#[derive(Debug, Clone)]
pub struct CertChain {
    pub leaf: CertificateDer<'static>,
    pub pem: Vec<String>,
}

/// Signing key and certificates of the mesh CA.
pub struct Ca {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// Certificates between a leaf and the root: the signing certificate first (empty when
    /// the root signs directly).
    intermediates: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
    /// PEM of `intermediates` then `root`, appended to every leaf.
    chain_pem: Vec<String>,
}

// === impl Ca ===

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .field("intermediates", &self.intermediates.len())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A fresh self-signed ECDSA P-256 root for `trust_domain`.
    pub fn generate(trust_domain: &str) -> Result<Self, CaError> {
        validate_trust_domain(trust_domain)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(DnType::CommonName, "spar root CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + ROOT_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let root = cert.der().clone();
        Self::from_parts(
            trust_domain,
            key,
            root.clone(),
            Vec::new(),
            root,
            Path::new("<generated>"),
        )
    }

    /// Loads a plugged-in CA from `dir` in Istio's layout: `ca-cert.pem` (the signing
    /// certificate), `ca-key.pem`, `root-cert.pem`, `cert-chain.pem` (signing certificate and
    /// intermediates, optionally ending with the root).
    pub fn load_plugged(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        validate_trust_domain(trust_domain)?;
        let ca_cert_path = dir.join(CA_CERT_FILE);
        let ca_key_path = dir.join(CA_KEY_FILE);
        let ca_cert = read_certs(&ca_cert_path)?.remove(0);
        let key = read_key(&ca_key_path)?;
        let root = read_certs(&dir.join(ROOT_CERT_FILE))?.remove(0);
        let chain_path = dir.join(CERT_CHAIN_FILE);
        let mut intermediates: Vec<_> = read_certs(&chain_path)?
            .into_iter()
            .filter(|c| *c != root)
            .collect();
        if ca_cert != root && intermediates.first() != Some(&ca_cert) {
            intermediates.retain(|c| *c != ca_cert);
            intermediates.insert(0, ca_cert.clone());
        }
        let ca = Self::from_parts(trust_domain, key, ca_cert, intermediates, root, dir)?;
        ca.self_check(dir)?;
        Ok(ca)
    }

    /// Loads an existing CA from its certificates and key.
    fn from_parts(
        trust_domain: &str,
        key: KeyPair,
        signing_cert: CertificateDer<'static>,
        intermediates: Vec<CertificateDer<'static>>,
        root: CertificateDer<'static>,
        dir: &Path,
    ) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let (_, parsed) =
            X509Certificate::from_der(&signing_cert).map_err(|e| CaError::BadCertificate {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        if !parsed.is_ca() {
            return Err(CaError::NotCa { cert: cert_path });
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::KeyMismatch {
                cert: cert_path,
                key: dir.join(CA_KEY_FILE),
            });
        }
        let not_before = parsed.validity().not_before.to_datetime();
        let not_after = parsed.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&signing_cert, key)?;
        let chain_pem = intermediates
            .iter()
            .chain(std::iter::once(&root))
            .map(to_pem)
            .collect();
        Ok(Ca {
            trust_domain: trust_domain.to_string(),
            issuer,
            not_before,
            not_after,
            intermediates,
            root,
            chain_pem,
        })
    }

    /// Signs a test leaf and verifies it, so that files which do not form a chain are
    /// reported at start-up rather than by every workload.
    fn self_check(&self, dir: &Path) -> Result<(), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let id = SpiffeId::new(&self.trust_domain, "spar-system", "ca-self-check")?;
        let csr = CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        let chain = self.sign_csr(&csr, &id, Duration::from_secs(60))?;
        let mut ders = vec![chain.leaf];
        ders.extend(self.intermediates.iter().cloned());
        verify_svid(
            &ders,
            std::slice::from_ref(&self.root),
            &self.trust_domain,
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|source| CaError::BrokenChain {
            dir: dir.to_path_buf(),
            source: Box::new(source),
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate workloads must trust.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    pub fn root_pem(&self) -> String {
        to_pem(&self.root)
    }

    /// Certificates between a leaf and the root, signing certificate first.
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates
    }

    /// When the signing certificate expires; no leaf outlives it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Signs `csr_pem` for `caller`, who has already been authenticated.
    ///
    /// The CSR's signature must verify, and every name it requests must be the caller's own
    /// SPIFFE ID (a CSR with no names gets the caller's identity too).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        caller: &SpiffeId,
        ttl: Duration,
    ) -> Result<CertChain, CaError> {
        if caller.trust_domain() != self.trust_domain {
            return Err(CaError::WrongTrustDomain {
                caller: caller.clone(),
                ca: self.trust_domain.clone(),
            });
        }
        let csr = VerifiedCsr::from_pem(csr_pem)?;
        let uri = caller.to_string();
        for name in &csr.requested_names {
            match name {
                RequestedName::Uri(u) if *u == uri => {}
                RequestedName::Uri(u) | RequestedName::Dns(u) | RequestedName::Other(u) => {
                    return Err(CaError::NotEntitled {
                        requested: u.clone(),
                        caller: caller.clone(),
                    })
                }
            }
        }
        let mut params = self.leaf_params(ttl)?;
        params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(uri)?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if csr.key_kind() == KeyKind::Rsa {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf = params.signed_by(&csr, &self.issuer)?;
        let mut pem = Vec::with_capacity(1 + self.chain_pem.len());
        pem.push(leaf.pem());
        pem.extend(self.chain_pem.iter().cloned());
        Ok(CertChain {
            leaf: leaf.der().clone(),
            pem,
        })
    }

    /// A TLS serving certificate (new P-256 key) for the control plane's own names, e.g.
    /// `istiod.istio-system.svc`, `localhost`, `127.0.0.1`. Returns the chain PEM (leaf
    /// first, root last) and the key PEM.
    pub fn issue_server_cert(
        &self,
        dns_names: &[&str],
        ips: &[IpAddr],
        ttl: Duration,
    ) -> Result<(String, String), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = self.leaf_params(ttl)?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = dns_names.first() {
            dn.push(DnType::CommonName, *first);
        }
        params.distinguished_name = dn;
        for name in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(Ia5String::try_from(*name)?));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let chain = std::iter::once(cert.pem())
            .chain(self.chain_pem.iter().cloned())
            .collect::<String>();
        Ok((chain, key.serialize_pem()))
    }

    /// Common leaf fields: empty subject, not a CA, serial, validity window.
    fn leaf_params(&self, ttl: Duration) -> Result<CertificateParams, CaError> {
        let now = OffsetDateTime::now_utc();
        if now >= self.not_after {
            return Err(CaError::CaExpired(self.not_after));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = (now - BACKDATE).max(self.not_before);
        params.not_after = (now + ttl).min(self.not_after);
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }
}

/// A positive 127-bit random serial number.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

pub(crate) fn to_pem(der: &CertificateDer<'_>) -> String {
    let block = pem::Pem::new("CERTIFICATE", der.as_ref());
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Reads every certificate in a PEM file (at least one).
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let data = fs::read(path).map_err(|source| CaError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaError::BadCertificate {
            path: path.to_path_buf(),
            reason: "no `BEGIN CERTIFICATE` block".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let pem = fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    KeyPair::from_pem(&pem).map_err(|e| CaError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Ca {
    /// Re-opens a CA persisted as `ca-cert.pem` + `ca-key.pem` + `root-cert.pem` where the
    /// root signs directly (what [`crate::store`] writes).
    pub(crate) fn load_self_signed(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        validate_trust_domain(trust_domain)?;
        let root = read_certs(&dir.join(ROOT_CERT_FILE))?.remove(0);
        let key = read_key(&dir.join(CA_KEY_FILE))?;
        Self::from_parts(trust_domain, key, root.clone(), Vec::new(), root, dir)
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
pub(crate) mod tests;
