//! What an operator wants to know about a certificate without reading its DER: serial,
//! SPIFFE ID, validity and fingerprint (`spar ctl proxy-config <proxy> secrets`,
//! `spar ctl cert-check`, the proxy's `/certs`).

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One certificate, described.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// Hex, lowercase, as openssl prints it without colons.
    pub serial: String,
    /// The URI SANs (a SVID has exactly one `spiffe://` URI).
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub is_ca: bool,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, uppercase hex pairs joined by `:` (openssl's `-fingerprint`).
    pub sha256: String,
}

impl CertInfo {
    /// The certificate's SPIFFE ID, when it has one.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.uris
            .iter()
            .map(String::as_str)
            .find(|u| u.starts_with("spiffe://"))
    }
}

/// Why a PEM text could not be described.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error("not PEM: {0}")]
    Pem(String),
    #[error("certificate {index} does not parse as X.509: {why}")]
    X509 { index: usize, why: String },
}

/// Every `CERTIFICATE` block of `pem_text`, in order (leaf first in a chain).
pub fn describe_pem(pem_text: &[u8]) -> Result<Vec<CertInfo>, DescribeError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| DescribeError::Pem(e.to_string()))?;
    blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .enumerate()
        .map(|(index, b)| {
            describe_der(b.contents()).map_err(|why| DescribeError::X509 { index, why })
        })
        .collect()
}

/// One DER certificate.
pub fn describe_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    let mut is_ca = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) => uris.push((*u).to_string()),
                        GeneralName::DNSName(d) => dns.push((*d).to_string()),
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            _ => {}
        }
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let sha256 = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertInfo {
        serial: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        uris,
        dns,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        is_ca,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::SpiffeId;
    use std::time::Duration;

    #[test]
    fn a_signed_svid_and_its_root_are_described() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::store::load_or_create(dir.path(), "cluster.local").unwrap();
        let id = SpiffeId::new("cluster.local", "default", "reviews").unwrap();
        let (csr, _key) = crate::client::generate_csr(&id).unwrap();
        let chain = ca.sign_csr(&csr, &id, Duration::from_secs(3600)).unwrap();
        let text = chain.pem.concat();
        let certs = describe_pem(text.as_bytes()).unwrap();
        let leaf = &certs[0];
        assert_eq!(
            leaf.spiffe_id(),
            Some("spiffe://cluster.local/ns/default/sa/reviews")
        );
        assert!(!leaf.is_ca);
        // The CA backdates notBefore by a minute.
        assert_eq!(leaf.not_after - leaf.not_before, 3600 + 60);
        assert_eq!(leaf.sha256.len(), 32 * 3 - 1);
        assert!(!leaf.serial.is_empty());
        let root = certs.last().unwrap();
        assert!(root.is_ca);
        assert_eq!(root.subject, root.issuer);
        assert!(
            describe_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
