//! The workload's side of Istio's CSR API: make a key and CSR for an identity, and ask the
//! CA over TLS. What `spar proxy` (and tests) use to obtain and renew SVIDs.

use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use thiserror::Error;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Request;

use crate::proto::{IstioCertificateRequest, IstioCertificateResponse, CREATE_CERTIFICATE_PATH};
use crate::spiffe::SpiffeId;

/// Why a certificate could not be obtained.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("making a key and CSR: {0}")]
    Csr(#[from] rcgen::Error),
    #[error("{0:?} is not a usable CA address (expected https://host:port)")]
    BadAddress(String),
    #[error("connecting to the CA at {addr}: {source} (is `spar control-plane` running with a CA flag?)")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("the CA refused: {0}")]
    Refused(#[from] tonic::Status),
    #[error("the bearer token cannot be sent as a header")]
    BadToken,
    #[error("the CA answered with a certificate that is not PEM: {0}")]
    BadChain(String),
}

/// A fresh ECDSA P-256 key and a CSR naming `id` as its one URI SAN (PEM, PEM).
pub fn generate_csr(id: &SpiffeId) -> Result<(String, String), ClientError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id.to_string())?)];
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((csr, key.serialize_pem()))
}

/// The certificates of a `cert_chain` answer, in order.
pub fn chain_der(pem: &[String]) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    pem.iter()
        .map(|p| {
            CertificateDer::from_pem_slice(p.as_bytes())
                .map_err(|e| ClientError::BadChain(e.to_string()))
        })
        .collect()
}

/// A TLS gRPC connection to the CA.
pub struct CaClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl CaClient {
    /// Connects to `addr` (`https://host:port`), trusting `root_pem` for the CA's serving
    /// certificate issued to `server_name` (e.g. `istiod.istio-system.svc` or `localhost`).
    /// `identity` (chain PEM, key PEM) is presented as a client certificate, for renewal.
    pub async fn connect(
        addr: &str,
        root_pem: &str,
        server_name: &str,
        identity: Option<(String, String)>,
    ) -> Result<Self, ClientError> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root_pem))
            .domain_name(server_name);
        if let Some((chain, key)) = identity {
            tls = tls.identity(Identity::from_pem(chain, key));
        }
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let channel = Channel::from_shared(addr.to_string())
            .map_err(|_| ClientError::BadAddress(addr.to_string()))?
            .tls_config(tls)
            .map_err(connect_err)?
            .connect()
            .await
            .map_err(connect_err)?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    /// `CreateCertificate`: the chain PEMs, leaf first and root last. `ttl` zero asks for
    /// the CA's default.
    pub async fn create_certificate(
        &mut self,
        csr_pem: String,
        ttl: Duration,
        bearer: Option<&str>,
    ) -> Result<Vec<String>, ClientError> {
        let mut req = Request::new(IstioCertificateRequest {
            csr: csr_pem,
            validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            metadata: None,
        });
        if let Some(token) = bearer {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::BadToken)?;
            req.metadata_mut().insert("authorization", value);
        }
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let resp: tonic::Response<IstioCertificateResponse> = self
            .grpc
            .unary(
                req,
                PathAndQuery::from_static(CREATE_CERTIFICATE_PATH),
                tonic_prost::ProstCodec::default(),
            )
            .await?;
        Ok(resp.into_inner().cert_chain)
    }
}
