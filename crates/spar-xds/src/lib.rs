//! The xDS side of the control plane: Envoy's Aggregated Discovery Service in both
//! state-of-the-world and delta variants, per-proxy ACK/NACK tracking, control-plane
//! metrics and the debug endpoints (`/debug/syncz`, `/debug/config_dump`).
//!
//! The server is generic over a [`ResourceSource`]: the control plane uses
//! [`SnapshotStore`] (config + registry snapshots translated per proxy), tests use
//! [`StaticSource`] with fixed resources. Every connection reads immutable snapshots
//! (`ArcSwap`) and is woken by a `tokio::sync::watch` when the generation changes; it
//! recomputes its proxy's output and pushes, in Envoy's warming order (CDS, EDS, LDS, RDS),
//! only the types whose encoded bytes changed.

mod body;
pub mod client;
mod coalesce;
mod delta;
pub mod dump;
mod held;
pub mod identity;
pub mod jwks;
pub mod metrics;
pub mod monitoring;
mod node;
pub mod resources;
mod secure;
mod server;
mod share;
mod sotw;
mod sotw_request;
pub mod source;
pub mod status;
mod throttle;
mod transport;
mod type_map;
mod wire;

pub use identity::{Issued, WorkloadIdentity};
pub use metrics::Metrics;
pub use node::{is_proxyless, proxy_node};
pub use resources::{encode, encode_one, Encoded, EncodedResource, TypeChange, TypeResources};
pub use secure::SecureAds;
pub use server::{AdsServer, DEFAULT_PUSH_CONCURRENCY};
pub use source::{
    Overlay, PushDebounce, ResourceSource, Snapshot, SnapshotStore, SourceError, StaticSource,
};
pub use status::{ProxyStatus, StatusRegistry, SyncState, TypeStatus};
pub use transport::{bind, ServeOptions};

#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error(
        "the first xDS request carries no node; Envoy sends one, check the client's bootstrap"
    )]
    NoNode,
    #[error(transparent)]
    Node(#[from] spar_translate::NodeError),
    #[error("cannot serve on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("xDS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}
