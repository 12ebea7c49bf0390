//! rustls verifiers that accept a peer only if it presents a valid X.509-SVID, for both ends
//! of mesh mTLS: [`SvidClientVerifier`] on the server side, [`SvidServerVerifier`] on the
//! client side (SPIFFE peers are named by their URI SAN, not by a DNS name).
//!
//! Each refusal carries the [`SvidError`] that caused it, so a failed handshake says exactly
//! why (expired, wrong trust domain, ...), and the certificate errors rustls sends as alerts
//! are the closest standard ones.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use thiserror::Error;

use crate::spiffe::SpiffeId;
use crate::svid::{verify_svid, SvidError};

/// Why a TLS peer was refused.
#[derive(Debug, Error)]
pub enum PeerError {
    #[error("the peer's certificate is not a valid SVID: {0}")]
    Svid(#[from] SvidError),
    #[error(
        "the peer is {id}, which is not one of the identities this connection accepts ({allowed})"
    )]
    NotAllowed { id: SpiffeId, allowed: String },
}

/// What both verifiers share: roots, trust domain, optional allow-list, crypto provider.
struct Policy {
    roots: Vec<CertificateDer<'static>>,
    trust_domain: String,
    allowed: Vec<SpiffeId>,
    provider: Arc<CryptoProvider>,
}

// === impl Policy ===

impl Policy {
    fn new(roots: Vec<CertificateDer<'static>>, trust_domain: &str) -> Self {
        Self {
            roots,
            trust_domain: trust_domain.to_string(),
            allowed: Vec::new(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let id = verify_svid(&chain, &self.roots, &self.trust_domain, now).map_err(to_rustls)?;
        if !self.allowed.is_empty() && !self.allowed.contains(&id) {
            let allowed = self
                .allowed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(other(PeerError::NotAllowed { id, allowed }));
        }
        Ok(id)
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("trust_domain", &self.trust_domain)
            .field("roots", &self.roots.len())
            .field("allowed", &self.allowed)
            .finish()
    }
}

fn other(e: PeerError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The standard alert for the common cases; the typed reason for the rest.
fn to_rustls(e: SvidError) -> rustls::Error {
    match e {
        SvidError::Expired { .. } => rustls::Error::InvalidCertificate(CertificateError::Expired),
        SvidError::NotYetValid { .. } => {
            rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
        }
        SvidError::UntrustedChain => {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        }
        SvidError::BadSignature => {
            rustls::Error::InvalidCertificate(CertificateError::BadSignature)
        }
        other_error => other(PeerError::Svid(other_error)),
    }
}

/// Server side: requires every client to present a valid SVID.
#[derive(Debug)]
pub struct SvidClientVerifier(Policy);

impl SvidClientVerifier {
    pub fn new(roots: Vec<CertificateDer<'static>>, trust_domain: &str) -> Self {
        Self(Policy::new(roots, trust_domain))
    }

    /// Accept only these identities (default: any in the trust domain).
    pub fn allow(mut self, ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        self.0.allowed.extend(ids);
        self
    }
}

impl ClientCertVerifier for SvidClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.check(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// Client side: requires the server to present a valid SVID; the TLS server name is not
/// compared with DNS SANs (SVIDs carry a URI SAN only), [`SvidServerVerifier::allow`]
/// restricts which identities may answer instead.
#[derive(Debug)]
pub struct SvidServerVerifier(Policy);

impl SvidServerVerifier {
    pub fn new(roots: Vec<CertificateDer<'static>>, trust_domain: &str) -> Self {
        Self(Policy::new(roots, trust_domain))
    }

    /// Accept only these identities (Istio: the destination's service accounts, or a
    /// DestinationRule's `subjectAltNames`).
    pub fn allow(mut self, ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        self.0.allowed.extend(ids);
        self
    }
}

impl ServerCertVerifier for SvidServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.check(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// The SPIFFE ID of a peer whose certificate a handshake already verified.
pub fn peer_id(certs: &[CertificateDer<'_>], trust_domain: &str) -> Option<SpiffeId> {
    crate::svid::leaf_id(certs.first()?, trust_domain).ok()
}
