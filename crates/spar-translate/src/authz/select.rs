//! Which `AuthorizationPolicy` and `RequestAuthentication` resources apply to a proxy:
//! those in the mesh root namespace (mesh-wide, or every workload the selector picks),
//! those in the proxy's namespace without a selector or with one its labels satisfy, and
//! — for gateways — those whose `targetRefs` name the proxy's Gateway
//! (`gateway.networking.k8s.io/gateway-name` label, same namespace). A resource with
//! `targetRefs` applies only through them, as in Istio.

use spar_model::istio::types::{PolicyTargetReference, WorkloadSelector};
use spar_model::resource::Resource;

use crate::{Ctx, ProxyKind};

const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

pub fn applies(
    ctx: &Ctx<'_>,
    r: &Resource,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) -> bool {
    let ns = r.meta.namespace.as_str();
    let node = ctx.node;
    let refs: Vec<&PolicyTargetReference> = target_ref.into_iter().chain(target_refs).collect();
    if !refs.is_empty() {
        let Some(gw_name) = node.labels.get(GATEWAY_NAME_LABEL) else {
            return false;
        };
        return node.kind == ProxyKind::Router
            && refs.iter().any(|t| {
                t.kind.as_deref() == Some("Gateway")
                    && t.name.as_deref() == Some(gw_name.as_str())
                    && t.namespace.as_deref().unwrap_or(ns) == node.namespace
                    && ns == node.namespace
            });
    }
    if ns != ctx.config.root_namespace() && ns != node.namespace {
        return false;
    }
    selector.is_none_or(|s| {
        s.match_labels
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
    })
}
