//! `PeerAuthentication` → the inbound side of mesh mutual TLS: which mode each of a
//! sidecar's inbound ports runs in, and the TLS context of its TLS filter chains.
//!
//! Istio's precedence: a workload policy (selector, in the workload's namespace) over the
//! namespace policy (no selector) over the mesh policy (root namespace, no selector); port
//! levels (`portLevelMtls`) only in workload policies; `UNSET` inherits the level above; with
//! several policies at one level the first by name wins (Istio: the oldest). The mesh default
//! is PERMISSIVE.
//!
//! With no PeerAuthentication at all the port is PERMISSIVE, as in Istio, when the mesh
//! issues workload certificates ([`spar_model::ConfigSet::workload_identities`]: the
//! control plane runs a CA). Without a CA no proxy holds the `default`/`ROOTCA` secrets
//! the TLS chains need, so such a mesh's sidecars accept plaintext only
//! (docs/differences.md).

use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
};
use envoy_types::pb::google::protobuf::BoolValue;
use spar_model::istio::types::MutualTLSMode;
use spar_model::Kind;

use crate::cluster::{sds, SDS_DEFAULT, SDS_ROOT, TLS_SOCKET};
use crate::util::any;
use crate::Ctx;

/// What an inbound port accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// mTLS only.
    Strict,
    /// mTLS or plaintext, told apart by the TLS inspector.
    Permissive,
    /// Plaintext only.
    Disable,
}

/// The mode of inbound `port`; `None` (plaintext only, no TLS chain) when no
/// PeerAuthentication applies to this proxy and the mesh has no workload identities.
pub fn mode(ctx: &Ctx<'_>, port: u32) -> Option<Mode> {
    let root = ctx.config.root_namespace();
    let node = ctx.node;
    let mut levels: [Option<(&str, &spar_model::istio::types::PeerAuthentication)>; 3] =
        [None, None, None];
    for r in ctx.config.of_kind(Kind::PeerAuthentication) {
        let Some(pa) = r.body.peer_authentication() else {
            continue;
        };
        let ns = r.meta.namespace.as_str();
        let level = match &pa.selector {
            None if ns == root => 0,
            None if ns == node.namespace => 1,
            Some(s)
                if ns == node.namespace
                    && !s.match_labels.is_empty()
                    && s.match_labels
                        .iter()
                        .all(|(k, v)| node.labels.get(k) == Some(v)) =>
            {
                2
            }
            _ => continue,
        };
        let name = r.meta.name.as_str();
        if levels[level].is_none_or(|(n, _)| name < n) {
            levels[level] = Some((name, pa));
        }
    }
    if levels.iter().all(Option::is_none) {
        return ctx.config.workload_identities().then_some(Mode::Permissive);
    }
    let mut mode = Mode::Permissive;
    for (level, pa) in levels.iter().enumerate() {
        let Some((_, pa)) = pa else { continue };
        let port_mode = (level == 2)
            .then(|| pa.port_level_mtls.get(&port.to_string()))
            .flatten()
            .and_then(|m| m.mode);
        let set = port_mode
            .filter(|m| *m != MutualTLSMode::Unset)
            .or_else(|| pa.mtls.as_ref().and_then(|m| m.mode));
        mode = match set {
            Some(MutualTLSMode::Strict) => Mode::Strict,
            Some(MutualTLSMode::Permissive) => Mode::Permissive,
            Some(MutualTLSMode::Disable) => Mode::Disable,
            Some(MutualTLSMode::Unset) | None => mode,
        };
    }
    Some(mode)
}

/// What a client may assume of a service's servers in `namespace` (Istio's
/// best-effort service mode): the namespace's PeerAuthentication without a selector, else
/// the mesh's, else PERMISSIVE. Workload and port levels are not read: one service can
/// span workloads. Auto mTLS skips only DISABLE.
pub fn service_mode(ctx: &Ctx<'_>, namespace: &str) -> Mode {
    let root = ctx.config.root_namespace();
    let level_mode = |ns: &str| {
        ctx.config
            .of_kind(Kind::PeerAuthentication)
            .filter(|r| r.meta.namespace == ns)
            .filter_map(|r| Some((r.meta.name.as_str(), r.body.peer_authentication()?)))
            .filter(|(_, pa)| pa.selector.is_none())
            .min_by_key(|(name, _)| *name)
            .and_then(|(_, pa)| pa.mtls.as_ref().and_then(|m| m.mode))
            .filter(|m| *m != MutualTLSMode::Unset)
    };
    match level_mode(namespace).or_else(|| level_mode(root)) {
        Some(MutualTLSMode::Strict) => Mode::Strict,
        Some(MutualTLSMode::Disable) => Mode::Disable,
        _ => Mode::Permissive,
    }
}

/// The TLS termination of an inbound mTLS chain: the proxy's own certificate (`default`),
/// peers checked against the mesh root (`ROOTCA`), a client certificate required.
pub fn inbound_tls() -> TransportSocket {
    let common = CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(SDS_DEFAULT)],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext::default()),
                    validation_context_sds_secret_config: Some(sds(SDS_ROOT)),
                    ..Default::default()
                },
            ),
        ),
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
        ..Default::default()
    };
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    }
}
