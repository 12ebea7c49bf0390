//! The service registry: one immutable snapshot of services (Kubernetes Services,
//! ServiceEntries), their hostnames in every form Istio accepts, ports with protocols,
//! and endpoints with labels, locality, service account and whether they run a sidecar.

/// The registry snapshot (built by [`Registry::build`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {}

impl Registry {
    pub fn build(config: &spar_model::ConfigSet) -> Registry {
        let _ = config;
        Registry {}
    }
}
