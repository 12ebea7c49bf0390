//! The CA's gRPC face: `istio.v1.auth.IstioCertificateService/CreateCertificate` served over
//! TLS, authenticating each call, applying the TTL policy and signing with [`Ca`].
//!
//! The tonic service is written by hand (no protoc): one unary method routed by path.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::auth::{AuthError, Authenticator, Caller};
use crate::authority::{Ca, CaError};
use crate::proto::{
    IstioCertificateRequest, IstioCertificateResponse, CREATE_CERTIFICATE_PATH, SERVICE_NAME,
};

/// Names the control plane's serving certificate carries (istiod's, plus loopback).
pub const SERVING_DNS_NAMES: &[&str] = &[
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
    "istiod",
    "localhost",
];
/// Serving certificate lifetime (capped by the CA's own expiry). It is not rotated while
/// the process runs; restart the control plane within this period.
pub const SERVING_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request accepted: a CSR is a few hundred bytes (a few KiB with RSA-4096), so
/// anything near this is not a CSR, and parsing it would only cost CPU.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why the CA server stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// TTL policy for workload certificates.
#[derive(Debug, Clone, Copy)]
pub struct TtlPolicy {
    /// Used when the request asks for none (validity_duration 0).
    pub default: Duration,
    /// Longer requests are refused (Istio's `MAX_WORKLOAD_CERT_TTL`).
    pub max: Duration,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(24 * 3600),
            max: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// The `IstioCertificateService` implementation.
#[derive(Clone)]
pub struct CaService {
    inner: Arc<Inner>,
}

struct Inner {
    ca: Arc<Ca>,
    auth: Box<dyn Authenticator>,
    ttl: TtlPolicy,
    extra_roots: Arc<crate::bundle::ExtraRoots>,
}

// === impl CaService ===

impl CaService {
    pub fn new(ca: Arc<Ca>, auth: Box<dyn Authenticator>, ttl: TtlPolicy) -> Self {
        Self::with_extra_roots(ca, auth, ttl, Arc::default())
    }

    /// As [`CaService::new`]; the answer's last element, the trust bundle (as Istio's CA
    /// sends its root-cert bundle), also carries `extra_roots` as they are at the time.
    pub fn with_extra_roots(
        ca: Arc<Ca>,
        auth: Box<dyn Authenticator>,
        ttl: TtlPolicy,
        extra_roots: Arc<crate::bundle::ExtraRoots>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ca,
                auth,
                ttl,
                extra_roots,
            }),
        }
    }

    /// Authenticates, checks the TTL, signs. Exposed for tests and benches that skip gRPC.
    pub fn create_certificate(
        &self,
        caller: &Caller<'_>,
        req: &IstioCertificateRequest,
    ) -> Result<IstioCertificateResponse, Status> {
        let inner = &self.inner;
        let id = inner.auth.authenticate(caller).map_err(|e| {
            tracing::info!(error = %e, "CSR refused: caller not authenticated");
            match e {
                AuthError::ReadTokens { .. }
                | AuthError::TokenLine { .. }
                | AuthError::TokenIdentity { .. } => Status::internal(e.to_string()),
                _ => Status::unauthenticated(e.to_string()),
            }
        })?;
        let ttl = match req.validity_duration {
            0 => inner.ttl.default,
            s if s < 0 => {
                return Err(Status::invalid_argument(format!(
                    "validity_duration {s} is negative"
                )))
            }
            s => Duration::from_secs(s.unsigned_abs()),
        };
        if ttl > inner.ttl.max {
            return Err(Status::invalid_argument(format!(
                "requested TTL {}s is above the maximum {}s",
                ttl.as_secs(),
                inner.ttl.max.as_secs()
            )));
        }
        let chain = inner.ca.sign_csr(&req.csr, &id, ttl).map_err(|e| {
            tracing::info!(identity = %id, error = %e, "CSR refused");
            match e {
                CaError::NotEntitled { .. } | CaError::WrongTrustDomain { .. } => {
                    Status::permission_denied(e.to_string())
                }
                CaError::Csr(_) => Status::invalid_argument(e.to_string()),
                _ => Status::internal(e.to_string()),
            }
        })?;
        tracing::debug!(identity = %id, ttl_s = ttl.as_secs(), "signed workload certificate");
        let mut cert_chain = chain.pem;
        if let Some(root) = cert_chain.last_mut() {
            *root = inner.extra_roots.bundle(root);
        }
        Ok(IstioCertificateResponse { cert_chain })
    }
}

impl NamedService for CaService {
    const NAME: &'static str = SERVICE_NAME;
}

struct CreateCertificate(CaService);

impl UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move {
            let peer = request.peer_certs();
            let metadata = request.metadata().clone();
            let req = request.into_inner();
            // Checking and signing a CSR is ~0.1 ms of CPU: off the async workers, so a burst
            // of CSRs does not stall the xDS streams sharing the runtime.
            tokio::task::spawn_blocking(move || {
                let caller = Caller {
                    metadata: &metadata,
                    peer_certs: peer.as_deref().map(|v| v.as_slice()),
                };
                svc.create_certificate(&caller, &req)
            })
            .await
            .map_err(|e| Status::internal(format!("the signing task failed: {e}")))?
            .map(Response::new)
        })
    }
}

impl Service<http::Request<Body>> for CaService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != CREATE_CERTIFICATE_PATH {
            return Box::pin(async move { Ok(Status::unimplemented("").into_http()) });
        }
        let method = CreateCertificate(self.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// TLS settings for the CA port: a serving certificate from `ca` for istiod's names and
/// loopback, and optional client certificates checked against the CA's root.
pub fn tls_config(ca: &Ca) -> Result<ServerTlsConfig, CaError> {
    let ips = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let (chain, key) = ca.issue_server_cert(SERVING_DNS_NAMES, &ips, SERVING_CERT_TTL)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(chain, key))
        .client_ca_root(Certificate::from_pem(ca.root_pem()))
        .client_auth_optional(true)
        .timeout(HANDSHAKE_TIMEOUT))
}

/// Serves `service` over TLS (see [`tls_config`]) on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTlsConfig,
    service: CaService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    Server::builder()
        .tls_config(tls)?
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
