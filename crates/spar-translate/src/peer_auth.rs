//! `PeerAuthentication` → the inbound side of mesh mutual TLS: which mode each of a
//! sidecar's inbound ports runs in, and the TLS context of its TLS filter chains.
//!
//! Istio's precedence: a workload policy (selector, in the workload's namespace) over the
//! namespace policy (no selector) over the mesh policy (root namespace, no selector); port
//! levels (`portLevelMtls`) only in workload policies; `UNSET` inherits the level above; with
//! several policies at one level the first by name wins (Istio: the oldest). The mesh default
//! is PERMISSIVE.
//!
//! Deliberate difference (docs/differences.md): with no PeerAuthentication at all, Spar's
//! sidecars accept plaintext only, where Istio's default PERMISSIVE also accepts mTLS. The
//! TLS chains need the proxy's `default`/`ROOTCA` secrets, which only a mesh with a CA has;
//! a PeerAuthentication is how a mesh says it has one.

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

/// The mode of inbound `port`; `None` when no PeerAuthentication applies to this proxy.
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
        return None;
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
