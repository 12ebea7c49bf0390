//! Security cross-checks: STRICT mTLS against DestinationRules that turn TLS off, and
//! AuthorizationPolicies that name namespaces or service accounts nobody has.

use spar_model::istio::{ClientTLSMode, MutualTLSMode};
use spar_model::resource::Resource;
use spar_model::{Diagnostic, FieldPath, Kind};

use crate::codes;
use crate::finding;
use crate::index::{labels_match, Index, Service};

pub fn analyze(idx: &Index, out: &mut Vec<Diagnostic>) {
    mtls_conflicts(idx, out);
    authz_references(idx, out);
}

/// The PeerAuthentication mode in force for a service: workload-level (selector)
/// beats namespace-level beats mesh-level (root namespace), as Istio resolves it.
fn effective_mode(idx: &Index, svc: &Service) -> Option<(MutualTLSMode, &'static str)> {
    let root = idx.set.root_namespace().to_string();
    let mut namespace_mode = None;
    let mut mesh_mode = None;
    for r in idx.set.of_kind(Kind::PeerAuthentication) {
        let Some(pa) = r.body.peer_authentication() else {
            continue;
        };
        let Some(mode) = pa.mtls.as_ref().and_then(|m| m.mode) else {
            continue;
        };
        match pa.selector.as_ref().filter(|s| !s.match_labels.is_empty()) {
            Some(sel) => {
                let selects = r.namespace() == svc.namespace
                    && svc.selector.is_some_and(|svc_sel| {
                        idx.workloads.iter().any(|w| {
                            w.namespace == svc.namespace
                                && labels_match(svc_sel, w.labels)
                                && labels_match(&sel.match_labels, w.labels)
                        })
                    });
                if selects {
                    return Some((mode, "workload"));
                }
            }
            None if r.namespace() == svc.namespace => namespace_mode = Some(mode),
            None if r.namespace() == root => mesh_mode = Some(mode),
            None => {}
        }
    }
    namespace_mode
        .map(|m| (m, "namespace"))
        .or(mesh_mode.map(|m| (m, "mesh")))
}

fn mtls_conflicts(idx: &Index, out: &mut Vec<Diagnostic>) {
    for r in idx.set.of_kind(Kind::DestinationRule) {
        let Some(dr) = r.body.destination_rule() else {
            continue;
        };
        let Some(host) = dr.host.as_deref() else {
            continue;
        };
        let Some(policy) = &dr.traffic_policy else {
            continue;
        };
        let mut disabled: Vec<FieldPath> = Vec::new();
        let tp = FieldPath::root().field("spec").field("trafficPolicy");
        if policy.tls.as_ref().and_then(|t| t.mode) == Some(ClientTLSMode::Disable) {
            disabled.push(tp.field("tls").field("mode"));
        }
        for (i, p) in policy.port_level_settings.iter().enumerate() {
            if p.tls.as_ref().and_then(|t| t.mode) == Some(ClientTLSMode::Disable) {
                disabled.push(
                    tp.field("portLevelSettings")
                        .index(i)
                        .field("tls")
                        .field("mode"),
                );
            }
        }
        if disabled.is_empty() {
            continue;
        }
        for svc in idx
            .services_for_host(host, r.namespace())
            .into_iter()
            .filter(|s| s.in_mesh)
        {
            if let Some((MutualTLSMode::Strict, level)) = effective_mode(idx, svc) {
                for path in &disabled {
                    out.push(finding(
                        codes::MTLS_POLICY_CONFLICT,
                        r,
                        path.clone(),
                        format!(
                            "TLS is disabled for {} but a {level}-level PeerAuthentication requires mutual TLS (STRICT): clients using this rule will be refused; use ISTIO_MUTUAL or relax the PeerAuthentication",
                            svc.host
                        ),
                    ));
                }
            }
        }
    }
}

fn authz_references(idx: &Index, out: &mut Vec<Diagnostic>) {
    for r in idx.set.of_kind(Kind::AuthorizationPolicy) {
        let Some(ap) = r.body.authorization_policy() else {
            continue;
        };
        let rules = FieldPath::root().field("spec").field("rules");
        for (i, rule) in ap.rules.iter().enumerate() {
            for (j, from) in rule.from.iter().enumerate() {
                let Some(src) = &from.source else { continue };
                let base = rules.index(i).field("from").index(j).field("source");
                for (field, values) in [
                    ("namespaces", &src.namespaces),
                    ("notNamespaces", &src.not_namespaces),
                ] {
                    for (k, ns) in values.iter().enumerate() {
                        check_namespace(idx, r, base.field(field).index(k), ns, out);
                    }
                }
                for (field, values) in [
                    ("principals", &src.principals),
                    ("notPrincipals", &src.not_principals),
                ] {
                    for (k, p) in values.iter().enumerate() {
                        check_principal(idx, r, base.field(field).index(k), p, out);
                    }
                }
            }
            for (j, cond) in rule.when.iter().enumerate() {
                let base = rules.index(i).field("when").index(j);
                match cond.key.as_deref() {
                    Some("source.namespace") => {
                        for (k, ns) in cond.values.iter().enumerate() {
                            check_namespace(idx, r, base.field("values").index(k), ns, out);
                        }
                    }
                    Some("source.principal") => {
                        for (k, p) in cond.values.iter().enumerate() {
                            check_principal(idx, r, base.field("values").index(k), p, out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn is_pattern(v: &str) -> bool {
    v.contains('*')
}

fn check_namespace(
    idx: &Index,
    r: &Resource,
    path: FieldPath,
    ns: &str,
    out: &mut Vec<Diagnostic>,
) {
    if is_pattern(ns) || idx.namespaces.contains(ns) {
        return;
    }
    out.push(finding(
        codes::AUTHZ_UNKNOWN_REFERENCE,
        r,
        path,
        format!("namespace {ns:?} is not described by the configuration; the rule can never match a workload there if it does not exist"),
    ));
}

/// Principals look like `cluster.local/ns/<namespace>/sa/<service account>`.
fn check_principal(
    idx: &Index,
    r: &Resource,
    path: FieldPath,
    principal: &str,
    out: &mut Vec<Diagnostic>,
) {
    if is_pattern(principal) {
        return;
    }
    let parts: Vec<&str> = principal.split('/').collect();
    let [_, "ns", ns, "sa", sa] = parts.as_slice() else {
        return;
    };
    let message = if !idx.namespaces.contains(*ns) {
        format!("principal {principal:?} names namespace {ns:?}, which the configuration does not describe")
    } else if !idx.service_accounts.contains(&format!("{ns}/{sa}")) {
        format!("principal {principal:?} names service account {ns}/{sa}, which no ServiceAccount or workload in the configuration uses")
    } else {
        return;
    };
    out.push(finding(codes::AUTHZ_UNKNOWN_REFERENCE, r, path, message));
}
