//! Webhook rules for `EnvoyFilter`: each patch needs what it applies to, an operation
//! and (except for REMOVE) a value; the match must describe the same kind of object;
//! the proxy version must be a regex. Combinations istiod silently skips are warned.

use super::common::{check_re2, check_selector, error, warn, Diags};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{
    ApplyTo, EnvoyConfigObjectMatch, EnvoyConfigObjectPatch, EnvoyFilter, PatchContext,
    PatchOperation,
};
use crate::FieldPath;

/// istiod skips longer proxyVersion patterns rather than compile them.
const MAX_PROXY_VERSION_LEN: usize = 1024;

const HCM: &str = "envoy.filters.network.http_connection_manager";
const HCM_LEGACY: &str = "envoy.http_connection_manager";

pub fn check(spec: &EnvoyFilter, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    if let Some(sel) = &spec.workload_selector {
        check_selector(
            &mut out,
            &root.field("workloadSelector").field("labels"),
            &sel.labels,
            "EnvoyFilter",
        );
    }
    for (i, cp) in spec.config_patches.iter().enumerate() {
        check_patch(&mut out, &root.field("configPatches").index(i), cp);
    }
    out
}

fn check_patch(out: &mut Diags, path: &FieldPath, cp: &EnvoyConfigObjectPatch) {
    // Waypoint patches follow their own (schema-checked) match shape.
    if cp.r#match.as_ref().and_then(|m| m.context) == Some(PatchContext::Waypoint) {
        return;
    }
    let Some(apply_to) = cp.apply_to.filter(|a| *a != ApplyTo::Invalid) else {
        error(
            out,
            path.field("applyTo"),
            "applyTo is required, e.g. HTTP_FILTER, CLUSTER or LISTENER",
        );
        return;
    };
    let Some(patch) = &cp.patch else {
        error(out, path.field("patch"), "patch is required");
        return;
    };
    let pp = path.field("patch");
    let Some(op) = patch.operation.filter(|o| *o != PatchOperation::Invalid) else {
        error(
            out,
            pp.field("operation"),
            "patch.operation is required, e.g. MERGE, ADD or INSERT_BEFORE",
        );
        return;
    };
    match (op, &patch.value) {
        (PatchOperation::Remove, Some(_)) => {
            warn(out, pp.field("value"), "patch.value is ignored by REMOVE")
        }
        (PatchOperation::Remove, None) | (_, Some(_)) => {}
        (_, None) => {
            error(
                out,
                pp.field("value"),
                format!("patch.value is required for {}", op.as_str()),
            );
            return;
        }
    }
    if !operation_applies(apply_to, op) {
        warn(
            out,
            pp.field("operation"),
            format!(
                "{} has no effect on applyTo {}: istiod skips this patch",
                op.as_str(),
                apply_to.as_str()
            ),
        );
    }
    let Some(m) = &cp.r#match else { return };
    let mp = path.field("match");
    if let Some(version) = m
        .proxy
        .as_ref()
        .and_then(|p| p.proxy_version.as_deref())
        .filter(|v| !v.is_empty())
    {
        let vp = mp.field("proxy").field("proxyVersion");
        if version.len() > MAX_PROXY_VERSION_LEN {
            warn(
                out,
                vp,
                format!("proxyVersion longer than {MAX_PROXY_VERSION_LEN} characters is ignored"),
            );
        } else if let Err(e) = check_re2(version) {
            error(
                out,
                vp,
                format!("proxyVersion must be a regex such as ^1\\.2[0-9].*: {e}"),
            );
            return;
        }
    }
    check_match_kind(out, &mp, apply_to, op, m);
}

/// Operations istiod performs for each kind of object; others are skipped.
fn operation_applies(apply_to: ApplyTo, op: PatchOperation) -> bool {
    use PatchOperation as O;
    let merge = matches!(op, O::Merge | O::MergeAndReplaceList);
    let insert = matches!(op, O::InsertBefore | O::InsertAfter | O::InsertFirst);
    match apply_to {
        ApplyTo::Listener | ApplyTo::FilterChain | ApplyTo::Cluster => {
            merge || matches!(op, O::Add | O::Remove)
        }
        ApplyTo::NetworkFilter | ApplyTo::HttpFilter | ApplyTo::ListenerFilter => true,
        ApplyTo::RouteConfiguration | ApplyTo::Bootstrap => merge,
        ApplyTo::VirtualHost => merge || matches!(op, O::Add | O::Remove | O::Replace),
        ApplyTo::HttpRoute => merge || insert || matches!(op, O::Add | O::Remove),
        ApplyTo::ExtensionConfig => op == O::Add,
        ApplyTo::Invalid => false,
    }
}

fn check_match_kind(
    out: &mut Diags,
    path: &FieldPath,
    apply_to: ApplyTo,
    op: PatchOperation,
    m: &EnvoyConfigObjectMatch,
) {
    let kinds = [
        ("listener", m.listener.is_some()),
        ("routeConfiguration", m.route_configuration.is_some()),
        ("cluster", m.cluster.is_some()),
        ("waypoint", m.waypoint.is_some()),
    ];
    let set: Vec<&str> = kinds.iter().filter(|(_, s)| *s).map(|(k, _)| *k).collect();
    if set.len() > 1 {
        error(
            out,
            path.clone(),
            format!(
                "set only one of listener, routeConfiguration, cluster or waypoint (got {})",
                set.join(", ")
            ),
        );
        return;
    }
    let Some(&given) = set.first() else { return };
    let wanted = match apply_to {
        ApplyTo::Listener | ApplyTo::FilterChain | ApplyTo::NetworkFilter | ApplyTo::HttpFilter => {
            "listener"
        }
        ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute => {
            "routeConfiguration"
        }
        ApplyTo::Cluster => "cluster",
        _ => given,
    };
    if given != wanted {
        error(
            out,
            path.field(given),
            format!(
                "applyTo {} needs a {wanted} match, not a {given} match",
                apply_to.as_str()
            ),
        );
        return;
    }
    if wanted == "listener" {
        check_filter_match(out, &path.field("listener"), apply_to, op, m);
    }
}

/// `match.listener.filterChain.filter(.subFilter)`: names what a filter patch targets.
fn check_filter_match(
    out: &mut Diags,
    path: &FieldPath,
    apply_to: ApplyTo,
    op: PatchOperation,
    m: &EnvoyConfigObjectMatch,
) {
    let filter = m
        .listener
        .as_ref()
        .and_then(|l| l.filter_chain.as_ref())
        .and_then(|fc| fc.filter.as_ref());
    let fp = path.field("filterChain").field("filter");
    let targets_one = matches!(op, PatchOperation::Remove | PatchOperation::Replace);
    match apply_to {
        ApplyTo::NetworkFilter if targets_one && filter.is_none() => {
            warn(out, fp.clone(), format!("{} on a NETWORK_FILTER needs filterChain.filter to say which filter; without it nothing happens", op.as_str()));
        }
        ApplyTo::HttpFilter
            if targets_one && filter.and_then(|f| f.sub_filter.as_ref()).is_none() =>
        {
            warn(out, fp.field("subFilter"), format!("{} on an HTTP_FILTER needs filter.subFilter to say which filter; without it nothing happens", op.as_str()));
        }
        _ => {}
    }
    let Some(filter) = filter else { return };
    if matches!(apply_to, ApplyTo::Listener | ApplyTo::FilterChain) {
        warn(
            out,
            fp.clone(),
            format!(
                "a filter match has no effect with applyTo {}",
                apply_to.as_str()
            ),
        );
    }
    let name = filter.name.as_deref().unwrap_or("");
    if name.is_empty() {
        error(
            out,
            fp.field("name"),
            format!("a filter match needs the filter's name, e.g. {HCM}"),
        );
        return;
    }
    let Some(sub) = &filter.sub_filter else {
        return;
    };
    if apply_to != ApplyTo::HttpFilter {
        error(
            out,
            fp.field("subFilter"),
            "a subFilter match can only be used with applyTo HTTP_FILTER",
        );
    } else if name != HCM && name != HCM_LEGACY {
        error(
            out,
            fp.field("name"),
            format!("a subFilter match requires the filter match to name {HCM}"),
        );
    } else if sub.name.as_deref().unwrap_or("").is_empty() {
        error(
            out,
            fp.field("subFilter").field("name"),
            "a subFilter match needs the HTTP filter's name, e.g. envoy.filters.http.router",
        );
    }
}

#[cfg(test)]
#[path = "envoy_filter_tests.rs"]
mod tests;
