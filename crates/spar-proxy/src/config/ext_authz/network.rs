//! `envoy.filters.network.ext_authz`: a gRPC authorizer judges each connection of a TCP
//! chain (istiod emits it for Istio's CUSTOM action with an `envoyExtAuthzGrpc` provider).
//! What it is sent: the peers' addresses and principals, and on request the client's
//! certificate and the TLS SNI. Fields that would change the decision in ways spar proxy
//! does not implement are refused by name, so the listener is NACKed, not half-enforced.

use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as Proto;

use super::super::metadata::{MetadataMatch, NETWORK_RBAC};
use super::super::ConfigError;
use super::{grpc, unsupported, GrpcAuthz};

/// One network ext_authz filter.
#[derive(Debug, Clone)]
pub struct NetworkExtAuthz {
    pub stat_prefix: String,
    pub service: GrpcAuthz,
    /// An authorizer that fails (unreachable, timeout, bad answer) lets the connection on.
    pub failure_mode_allow: bool,
    /// Send the client's certificate (URL-encoded PEM) as `source.certificate`.
    pub include_peer_certificate: bool,
    /// Send the SNI as `tls_session.sni`.
    pub include_tls_session: bool,
    /// The filter runs only for connections whose metadata matches (else: always).
    pub enabled_metadata: Option<MetadataMatch>,
}

impl NetworkExtAuthz {
    pub fn from_proto(p: &Proto, what: &dyn Fn() -> String) -> Result<Self, ConfigError> {
        let refused: [(bool, &str); 5] = [
            (
                !p.bootstrap_metadata_labels_key.is_empty(),
                "bootstrap_metadata_labels_key",
            ),
            (p.send_tls_alert_on_denial, "send_tls_alert_on_denial"),
            (
                !p.metadata_context_namespaces.is_empty(),
                "metadata_context_namespaces",
            ),
            (
                !p.typed_metadata_context_namespaces.is_empty(),
                "typed_metadata_context_namespaces",
            ),
            (p.shadow_mode, "shadow_mode"),
        ];
        if let Some((_, field)) = refused.iter().find(|(set, _)| *set) {
            return Err(unsupported(what, field));
        }
        let g = p
            .grpc_service
            .as_ref()
            .ok_or_else(|| ConfigError::Invalid {
                what: what(),
                why: "network ext_authz names no grpc_service".into(),
            })?;
        Ok(NetworkExtAuthz {
            stat_prefix: p.stat_prefix.clone(),
            service: grpc(g, what)?,
            failure_mode_allow: p.failure_mode_allow,
            include_peer_certificate: p.include_peer_certificate,
            include_tls_session: p.include_tls_session,
            enabled_metadata: p
                .filter_enabled_metadata
                .as_ref()
                .map(|m| MetadataMatch::from_proto_on(m, &[NETWORK_RBAC], what))
                .transpose()?,
        })
    }
}
