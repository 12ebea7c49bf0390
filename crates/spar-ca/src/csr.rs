//! Reading a PKCS#10 certificate signing request: its public key, the names it asks for, and
//! proof that whoever sent it holds the private key (the CSR's own signature).
//!
//! The CA never copies anything else from a CSR into a certificate: it builds every field of
//! the leaf itself, so the only things taken from here are the key and the requested names
//! (which are checked against the caller's identity).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use rcgen::{PublicKeyData, SignatureAlgorithm};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use thiserror::Error;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const OID_RSA_SHA384: &str = "1.2.840.113549.1.1.12";
const OID_RSA_SHA512: &str = "1.2.840.113549.1.1.13";

/// Why a CSR cannot be used.
#[derive(Debug, Error)]
pub enum CsrError {
    #[error("the csr field holds no PEM `CERTIFICATE REQUEST` block: {0}")]
    NotPem(String),
    #[error("the certificate request is not valid DER: {0}")]
    Malformed(String),
    #[error(
        "unsupported key in the certificate request ({0}); use ECDSA P-256/P-384, Ed25519 or RSA"
    )]
    UnsupportedKey(String),
    #[error("unsupported signature algorithm {0} in the certificate request")]
    UnsupportedSignature(String),
    #[error("the certificate request's signature does not verify with its own public key")]
    BadSignature,
}

/// The key family of a CSR, which decides the leaf's key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

/// A name requested in the CSR's subjectAltName extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedName {
    Uri(String),
    Dns(String),
    /// Any other kind of name (IP address, e-mail, ...), described for error messages.
    Other(String),
}

/// A CSR whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    kind: KeyKind,
    /// The BIT STRING contents of SubjectPublicKeyInfo (EC point, RSAPublicKey, Ed25519 key).
    public_key: Vec<u8>,
    pub requested_names: Vec<RequestedName>,
}

// === impl VerifiedCsr ===

impl VerifiedCsr {
    /// Parses a PEM CSR and verifies its self-signature.
    pub fn from_pem(pem: &str) -> Result<Self, CsrError> {
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| CsrError::NotPem(e.to_string()))?;
        Self::from_der(der.as_ref())
    }

    /// Parses a DER CSR and verifies its self-signature.
    pub fn from_der(der: &[u8]) -> Result<Self, CsrError> {
        let (rest, csr) = X509CertificationRequest::from_der(der)
            .map_err(|e| CsrError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::Malformed(
                "trailing bytes after the request".into(),
            ));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        let key_oid = spki.algorithm.algorithm.to_id_string();
        let kind = match key_oid.as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    OID_P256 => KeyKind::EcdsaP256,
                    OID_P384 => KeyKind::EcdsaP384,
                    other => return Err(CsrError::UnsupportedKey(format!("EC curve {other}"))),
                }
            }
            OID_RSA => KeyKind::Rsa,
            OID_ED25519 => KeyKind::Ed25519,
            other => return Err(CsrError::UnsupportedKey(format!("key algorithm {other}"))),
        };
        let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
        let alg: &'static dyn VerificationAlgorithm = match (sig_oid.as_str(), kind) {
            (OID_ECDSA_SHA256, KeyKind::EcdsaP256) => &signature::ECDSA_P256_SHA256_ASN1,
            (OID_ECDSA_SHA384, KeyKind::EcdsaP256) => &signature::ECDSA_P256_SHA384_ASN1,
            (OID_ECDSA_SHA256, KeyKind::EcdsaP384) => &signature::ECDSA_P384_SHA256_ASN1,
            (OID_ECDSA_SHA384, KeyKind::EcdsaP384) => &signature::ECDSA_P384_SHA384_ASN1,
            (OID_ED25519, KeyKind::Ed25519) => &signature::ED25519,
            (OID_RSA_SHA256, KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (OID_RSA_SHA384, KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (OID_RSA_SHA512, KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (other, _) => return Err(CsrError::UnsupportedSignature(other.to_string())),
        };
        let public_key = spki.subject_public_key.data.to_vec();
        UnparsedPublicKey::new(alg, &public_key)
            .verify(info.raw, &csr.signature_value.data)
            .map_err(|_| CsrError::BadSignature)?;

        let mut requested_names = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                requested_names.extend(san.general_names.iter().map(requested_name));
            }
        }
        Ok(VerifiedCsr {
            kind,
            public_key,
            requested_names,
        })
    }

    pub fn key_kind(&self) -> KeyKind {
        self.kind
    }
}

fn requested_name(name: &GeneralName<'_>) -> RequestedName {
    match name {
        GeneralName::URI(u) => RequestedName::Uri((*u).to_string()),
        GeneralName::DNSName(d) => RequestedName::Dns((*d).to_string()),
        other => RequestedName::Other(other.to_string()),
    }
}

impl PublicKeyData for VerifiedCsr {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.kind {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::Rsa => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::string::Ia5String;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn csr_for(names: &[&str], key: &KeyPair) -> String {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::URI(Ia5String::try_from(names[0]).unwrap()),
            SanType::DnsName(Ia5String::try_from(names[1]).unwrap()),
        ];
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn reads_key_and_names() {
        let key = KeyPair::generate().unwrap();
        let pem = csr_for(&["spiffe://cluster.local/ns/a/sa/b", "example.com"], &key);
        let csr = VerifiedCsr::from_pem(&pem).unwrap();
        assert_eq!(csr.key_kind(), KeyKind::EcdsaP256);
        assert_eq!(csr.der_bytes(), key.public_key_raw());
        assert_eq!(
            csr.requested_names,
            vec![
                RequestedName::Uri("spiffe://cluster.local/ns/a/sa/b".into()),
                RequestedName::Dns("example.com".into()),
            ]
        );
    }

    #[test]
    fn rejects_tampered_signature() {
        let key = KeyPair::generate().unwrap();
        let pem = csr_for(&["spiffe://cluster.local/ns/a/sa/b", "b.a"], &key);
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        // Flip a byte inside the requested name (part of the signed info).
        let pos = der.windows(5).position(|w| w == b"ns/a/").unwrap();
        der[pos + 3] = b'x';
        assert!(matches!(
            VerifiedCsr::from_der(&der),
            Err(CsrError::BadSignature)
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            VerifiedCsr::from_pem("hello"),
            Err(CsrError::NotPem(_))
        ));
        assert!(matches!(
            VerifiedCsr::from_der(b"\x30\x03abc"),
            Err(CsrError::Malformed(_))
        ));
    }
}
