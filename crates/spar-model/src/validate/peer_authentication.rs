//! Webhook rules for `PeerAuthentication`, and the `selector`/`targetRef` rules that every
//! policy kind (AuthorizationPolicy, RequestAuthentication, Telemetry, WasmPlugin,
//! TrafficExtension) shares with it.
//!
//! Istio's webhook checks nothing in a PeerAuthentication that the CRD schema does not
//! already check (mode enum, port keys 1-65535, `portLevelMtls` only with a selector, at
//! least one port entry) except the empty-selector warning below.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{PeerAuthentication, PolicyTargetReference, WorkloadSelector};
use crate::FieldPath;

pub fn check(spec: &PeerAuthentication, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    check_selector(spec.selector.as_ref(), &ctx.spec(), &mut out);
    out
}

/// A `selector` without labels is legal but selects the whole namespace, exactly as if it
/// were absent; Istio warns because it usually means the labels were lost in an edit.
pub(super) fn check_selector(
    selector: Option<&WorkloadSelector>,
    spec: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(sel) = selector {
        if sel.match_labels.is_empty() {
            out.push(Diagnostic::warning(
                spec.field("selector"),
                "selector has no matchLabels, so it applies to every workload in the namespace as if \
                 it were absent; add matchLabels or remove the selector",
            ));
        }
    }
}

/// The kinds a policy may attach to, as `(canonical group, kind)`; the core group is
/// written `""` in YAML and called `core` by Istio.
const TARGET_KINDS: &[(&str, &str)] = &[
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

/// `targetRef` and every `targetRefs[i]`. The schema already demands `kind` and `name`, a
/// well-formed group and no namespace; what it cannot say is which kinds Istio attaches to.
pub(super) fn check_target_refs(
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    spec: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(r) = target_ref {
        check_target_ref(r, spec.field("targetRef"), out);
    }
    for (i, r) in target_refs.iter().enumerate() {
        check_target_ref(r, spec.field("targetRefs").index(i), out);
    }
}

fn check_target_ref(r: &PolicyTargetReference, path: FieldPath, out: &mut Vec<Diagnostic>) {
    let Some(kind) = r.kind.as_deref() else {
        return;
    };
    let group = r.group.as_deref().unwrap_or("");
    let canonical = if group.is_empty() { "core" } else { group };
    if TARGET_KINDS
        .iter()
        .any(|(g, k)| *g == canonical && *k == kind)
    {
        return;
    }
    let hint = match (group, kind) {
        ("networking.istio.io", "Gateway") => {
            "; an Istio Gateway cannot be a target, use a Kubernetes Gateway API gateway \
             (group gateway.networking.k8s.io)"
        }
        (_, "Service") => "; a Service is in the core group, write group \"\"",
        (_, "ServiceEntry") => "; a ServiceEntry is in group networking.istio.io",
        (_, "Gateway" | "GatewayClass") => "; write group gateway.networking.k8s.io",
        _ => "",
    };
    out.push(Diagnostic::error(
        path,
        format!(
            "targetRef to group {group:?} kind {kind:?} is not supported: it must be a Service (group \"\"), \
             a ServiceEntry (group networking.istio.io), or a Gateway or GatewayClass \
             (group gateway.networking.k8s.io){hint}"
        ),
    ));
}

#[cfg(test)]
#[path = "policy_reference_tests.rs"]
pub(super) mod reference_tests;

#[cfg(test)]
mod tests {
    use super::reference_tests::{spec, CTX};
    use super::*;

    fn run(yaml: &str) -> Vec<Diagnostic> {
        check(&spec::<PeerAuthentication>(yaml), &CTX)
    }

    #[test]
    fn selector_without_labels_warns() {
        let cases: &[(&str, usize)] = &[
            ("mtls: {mode: STRICT}", 0),
            ("selector: {matchLabels: {app: a}}", 0),
            ("selector: {}", 1),
            ("selector: {matchLabels: {}}", 1),
        ];
        for (yaml, warnings) in cases {
            let d = run(yaml);
            assert!(d.iter().all(|d| !d.is_error()), "{yaml}: {d:?}");
            assert_eq!(d.len(), *warnings, "{yaml}: {d:?}");
        }
    }

    #[test]
    fn target_ref_kinds() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "Service", true),
            ("core", "Service", true),
            ("networking.istio.io", "ServiceEntry", true),
            ("gateway.networking.k8s.io", "Gateway", true),
            ("gateway.networking.k8s.io", "GatewayClass", true),
            ("networking.istio.io", "Gateway", false),
            ("apps", "Deployment", false),
            ("", "ServiceEntry", false),
            ("gateway.networking.k8s.io", "HTTPRoute", false),
        ];
        for (group, kind, ok) in cases {
            let r = PolicyTargetReference {
                group: Some(group.to_string()),
                kind: Some(kind.to_string()),
                name: Some("x".into()),
                namespace: None,
            };
            let mut out = Vec::new();
            check_target_refs(
                Some(&r),
                std::slice::from_ref(&r),
                &FieldPath::root().field("spec"),
                &mut out,
            );
            assert_eq!(out.is_empty(), *ok, "{group}/{kind}: {out:?}");
            if !ok {
                assert_eq!(out.len(), 2);
                assert_eq!(out[0].path.as_ref().unwrap().to_string(), "spec.targetRef");
                assert_eq!(
                    out[1].path.as_ref().unwrap().to_string(),
                    "spec.targetRefs[0]"
                );
            }
        }
    }
}
