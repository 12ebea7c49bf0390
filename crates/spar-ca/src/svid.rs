//! Verifying an X.509-SVID the way the SPIFFE spec says a peer must: one URI SAN holding a
//! SPIFFE ID in the expected trust domain, a leaf that is not a CA and may sign, a chain to a
//! trusted root, and a validity window that contains "now".
//!
//! Both ends of a mesh connection and the CA's `PeerCertificate` authenticator use this, so
//! each reason for refusal is its own error variant and tests can name it.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use thiserror::Error;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::spiffe::{SpiffeId, SpiffeIdError};

/// Why a certificate chain is not a valid SVID for this trust domain.
#[derive(Debug, Error)]
pub enum SvidError {
    #[error("no certificate was presented")]
    Empty,
    #[error("certificate {index} of the chain is not valid DER X.509: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("the leaf certificate has {0} URI SANs; an SVID has exactly one")]
    MultipleUriSans(usize),
    #[error("the leaf certificate has no URI SAN, so it carries no SPIFFE ID")]
    NoUriSan,
    #[error("a subjectAltName of the leaf contains a NUL byte: {0:?}")]
    NulInSan(String),
    #[error("the leaf's URI SAN is not a workload SPIFFE ID: {0}")]
    InvalidSpiffeId(#[from] SpiffeIdError),
    #[error("the leaf's SPIFFE ID {id} is in trust domain {found:?}, expected {expected:?}")]
    WrongTrustDomain {
        id: SpiffeId,
        expected: String,
        found: String,
    },
    #[error("the leaf certificate is a CA certificate (basicConstraints CA:TRUE); an SVID leaf must not be")]
    LeafIsCa,
    #[error("the leaf certificate may sign certificates or CRLs (keyCertSign/cRLSign); an SVID leaf must not")]
    LeafCanSign,
    #[error("the leaf certificate lacks the digitalSignature key usage an SVID needs")]
    NoDigitalSignature,
    #[error("the leaf's extended key usage lacks serverAuth and clientAuth")]
    WrongExtendedKeyUsage,
    #[error("the leaf certificate expired at unix time {not_after} (now {now}); the workload must renew it")]
    Expired { not_after: i64, now: i64 },
    #[error("the leaf certificate is not valid before unix time {not_before} (now {now}); check the clocks")]
    NotYetValid { not_before: i64, now: i64 },
    #[error("a certificate in the chain is outside its validity period: {0}")]
    ChainValidity(webpki::Error),
    #[error("the chain does not lead to a trusted root (wrong CA, or a missing intermediate)")]
    UntrustedChain,
    #[error("a signature in the chain does not verify")]
    BadSignature,
    #[error("root certificate {index} cannot be used as a trust anchor: {source}")]
    BadRoot { index: usize, source: webpki::Error },
    #[error("the chain is not a valid certificate path: {0}")]
    Chain(webpki::Error),
}

/// Verifies `chain` (leaf first, then intermediates; a trailing root is allowed) against
/// `roots`, and returns the leaf's SPIFFE ID.
pub fn verify_svid(
    chain: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
    trust_domain: &str,
    now: UnixTime,
) -> Result<SpiffeId, SvidError> {
    let leaf_der = chain.first().ok_or(SvidError::Empty)?;
    let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|e| SvidError::Malformed {
        index: 0,
        reason: e.to_string(),
    })?;
    let id = check_leaf(&leaf, trust_domain, now)?;

    let anchors = roots
        .iter()
        .enumerate()
        .map(|(index, r)| {
            webpki::anchor_from_trusted_cert(r)
                .map(|a| a.to_owned())
                .map_err(|source| SvidError::BadRoot { index, source })
        })
        .collect::<Result<Vec<TrustAnchor<'static>>, _>>()?;
    let ee = EndEntityCert::try_from(leaf_der).map_err(map_webpki)?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &chain[1..],
        now,
        KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(map_webpki)?;
    Ok(id)
}

/// The SPIFFE ID of a leaf after the same leaf checks as [`verify_svid`] (validity at
/// "now"), without checking the chain: for a certificate a TLS handshake already verified.
pub fn leaf_id(leaf_der: &CertificateDer<'_>, trust_domain: &str) -> Result<SpiffeId, SvidError> {
    let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|e| SvidError::Malformed {
        index: 0,
        reason: e.to_string(),
    })?;
    check_leaf(&leaf, trust_domain, UnixTime::now())
}

/// Everything the SVID spec asks of the leaf itself.
fn check_leaf(
    leaf: &X509Certificate<'_>,
    trust_domain: &str,
    now: UnixTime,
) -> Result<SpiffeId, SvidError> {
    let mut uris = Vec::new();
    let mut can_sign = false;
    let mut digital_signature = false;
    let mut eku_ok = true;
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    let text = match name {
                        GeneralName::URI(s)
                        | GeneralName::DNSName(s)
                        | GeneralName::RFC822Name(s) => *s,
                        _ => "",
                    };
                    if text.contains('\0') {
                        return Err(SvidError::NulInSan(text.to_string()));
                    }
                    if let GeneralName::URI(u) = name {
                        uris.push(*u);
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(SvidError::LeafIsCa),
            ParsedExtension::KeyUsage(ku) => {
                can_sign = ku.key_cert_sign() || ku.crl_sign();
                digital_signature = ku.digital_signature();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                eku_ok = eku.any || (eku.server_auth && eku.client_auth);
            }
            _ => {}
        }
    }
    let uri = match uris.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [one] => *one,
        many => return Err(SvidError::MultipleUriSans(many.len())),
    };
    let id: SpiffeId = uri.parse()?;
    if id.trust_domain() != trust_domain {
        return Err(SvidError::WrongTrustDomain {
            found: id.trust_domain().to_string(),
            expected: trust_domain.to_string(),
            id,
        });
    }
    if can_sign {
        return Err(SvidError::LeafCanSign);
    }
    if !digital_signature {
        return Err(SvidError::NoDigitalSignature);
    }
    if !eku_ok {
        return Err(SvidError::WrongExtendedKeyUsage);
    }
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = leaf.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now < not_before {
        return Err(SvidError::NotYetValid { not_before, now });
    }
    if now > not_after {
        return Err(SvidError::Expired { not_after, now });
    }
    Ok(id)
}

fn map_webpki(e: webpki::Error) -> SvidError {
    match e {
        webpki::Error::CaUsedAsEndEntity => SvidError::LeafIsCa,
        webpki::Error::UnknownIssuer => SvidError::UntrustedChain,
        webpki::Error::InvalidSignatureForPublicKey => SvidError::BadSignature,
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            SvidError::ChainValidity(e)
        }
        other => SvidError::Chain(other),
    }
}

#[cfg(test)]
#[path = "svid_tests.rs"]
mod tests;
