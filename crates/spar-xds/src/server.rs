//! The ADS server: shared state, and what every stream sets up from its first request.
//! The streams themselves are [`crate::sotw`] and [`crate::delta`]; the gRPC transport is
//! [`crate::transport`].

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::Status;

use crate::body::Bodies;
use crate::held::NameSets;
use crate::metrics::Metrics;
use crate::source::ResourceSource;
use crate::status::StatusRegistry;
use crate::transport::ServeOptions;

/// Shared by every connection.
pub struct Shared<S> {
    pub source: S,
    pub status: Arc<StatusRegistry>,
    pub metrics: Arc<Metrics>,
    /// Push permits ([`crate::throttle`]).
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) names: NameSets,
    /// Whole-type resource lists encoded once ([`crate::body`]).
    pub(crate) bodies: Bodies,
}

/// Connections with a push in flight at once, by default (Istio's `PILOT_PUSH_THROTTLE`).
pub const DEFAULT_PUSH_CONCURRENCY: usize = 100;

/// The Aggregated Discovery Service over a [`ResourceSource`].
pub struct AdsServer<S> {
    shared: Arc<Shared<S>>,
}

impl<S: ResourceSource> AdsServer<S> {
    pub fn new(source: S, status: Arc<StatusRegistry>, metrics: Arc<Metrics>) -> AdsServer<S> {
        AdsServer {
            shared: Arc::new(Shared {
                source,
                status,
                metrics,
                permits: Arc::new(Semaphore::new(DEFAULT_PUSH_CONCURRENCY)),
                names: NameSets::default(),
                bodies: Bodies::default(),
            }),
        }
    }

    /// How many connections may have a push in flight at once (at least one).
    ///
    /// # Panics
    /// When called after [`Self::secure_service`] shared the server's state.
    pub fn push_concurrency(mut self, n: usize) -> AdsServer<S> {
        Arc::get_mut(&mut self.shared)
            .expect("push_concurrency is set before the server is shared")
            .permits = Arc::new(Semaphore::new(n.max(1)));
        self
    }

    /// The same ADS, for the secure port: callers authenticate with `issuer` and get their
    /// own workload certificates over SDS. Serve it with TLS (a tonic server).
    pub fn secure_service(
        &self,
        issuer: Arc<dyn crate::identity::WorkloadIdentity>,
    ) -> crate::secure::SecureAds<S> {
        crate::secure::SecureAds::new(self.shared.clone(), issuer)
    }

    /// Serves ADS (plaintext gRPC) on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        opts: ServeOptions,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        crate::transport::serve(self.shared, listener, opts, shutdown).await
    }
}

/// Keeps `pilot_xds` equal to the number of live connections.
pub(crate) struct Connected(Arc<Metrics>);

impl Connected {
    pub(crate) fn new(m: &Arc<Metrics>) -> Connected {
        m.connected.inc();
        Connected(m.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.dec();
    }
}

/// An authenticated caller of the secure port.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) issuer: Arc<dyn crate::identity::WorkloadIdentity>,
    /// The SPIFFE ID it proved.
    pub(crate) identity: String,
}

/// What every ADS stream sets up from its first request, whichever variant it speaks:
/// who the proxy is, its first resources, and the change feed to follow.
pub(crate) struct Session {
    pub(crate) node: spar_translate::ProxyNode,
    pub(crate) proxyless: bool,
    pub(crate) generation: u64,
    /// The node class's output, before this connection's own secrets are added.
    pub(crate) base: Arc<crate::resources::Encoded>,
    /// What this connection is sent: `base`, plus its own secrets on the secure port.
    pub(crate) current: Arc<crate::resources::Encoded>,
    pub(crate) own: Option<crate::identity::OwnSecrets>,
    pub(crate) changes: tokio::sync::watch::Receiver<u64>,
    /// Where the connection records what it sends and what the proxy answers.
    pub(crate) status: crate::status::ConnStatus,
    // Held for the stream's life: dropping them records the disconnect.
    _registration: crate::status::Registration,
    _connected: Connected,
}

impl Session {
    pub(crate) fn open<S: ResourceSource>(
        shared: &Shared<S>,
        node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
        variant: &'static str,
        caller: Option<&Caller>,
    ) -> Result<Session, Status> {
        let proxyless = crate::node::is_proxyless(node);
        let node =
            crate::node::proxy_node(node).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let registration = shared.status.connect(&node.id, variant);
        let connected = Connected::new(&shared.metrics);
        let mut changes = shared.source.changes();
        let generation = *changes.borrow_and_update();
        let own = match caller {
            Some(c) => {
                let own = crate::identity::OwnSecrets::issue(c.issuer.clone(), c.identity.clone())?;
                tracing::info!(proxy = %node.id, identity = %own.identity(), "authenticated xDS connection");
                Some(own)
            }
            None => None,
        };
        let base = if proxyless {
            shared
                .source
                .grpc_resources(&node, &std::collections::BTreeSet::new())
        } else {
            shared.source.resources(&node)
        };
        let current = crate::identity::for_connection(&base, own.as_ref(), &node.namespace);
        Ok(Session {
            status: registration.status(),
            node,
            proxyless,
            generation,
            base,
            current,
            own,
            changes,
            _registration: registration,
            _connected: connected,
        })
    }
}
