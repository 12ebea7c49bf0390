//! ADS on the control plane's TLS port (15012, next to the CA), as istiod serves it: the
//! caller must prove an identity (bearer token or client certificate) before a stream
//! starts, and then gets its own workload certificate over SDS ([`crate::identity`]).
//!
//! The TLS and gRPC routing are tonic's server (shared with the CA service); this is the
//! service it routes the ADS methods to. Streams run exactly as on the plaintext port.

use std::convert::Infallible;
use std::future::Ready;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::Service;
use tonic::server::NamedService;

use crate::identity::WorkloadIdentity;
use crate::server::{Caller, Shared};
use crate::source::ResourceSource;
use crate::transport::{route, ResponseBody};

/// The ADS service for the secure port; add it to a tonic server with TLS.
pub struct SecureAds<S> {
    shared: Arc<Shared<S>>,
    issuer: Arc<dyn WorkloadIdentity>,
}

impl<S> Clone for SecureAds<S> {
    fn clone(&self) -> Self {
        SecureAds {
            shared: self.shared.clone(),
            issuer: self.issuer.clone(),
        }
    }
}

impl<S> SecureAds<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>, issuer: Arc<dyn WorkloadIdentity>) -> Self {
        SecureAds { shared, issuer }
    }
}

impl<S> NamedService for SecureAds<S> {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<S: ResourceSource> Service<http::Request<tonic::body::Body>> for SecureAds<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let resp = match self.issuer.authenticate(&parts.headers, &parts.extensions) {
            Ok(identity) => {
                let caller = Caller {
                    issuer: self.issuer.clone(),
                    identity,
                };
                route(
                    self.shared.clone(),
                    parts.uri.path(),
                    body,
                    Some(caller),
                    false,
                )
            }
            Err(status) => {
                tracing::info!(%status, "xDS caller on the secure port refused");
                ResponseBody::trailers_only(&status)
            }
        };
        std::future::ready(Ok(resp.map(tonic::body::Body::new)))
    }
}
