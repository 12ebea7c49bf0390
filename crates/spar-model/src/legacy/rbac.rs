//! `RbacConfig` / `ClusterRbacConfig`, `ServiceRole` and `ServiceRoleBinding` →
//! AuthorizationPolicies.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::convert::{object, split_service, Ctx, LegacySource, DRY_RUN_ANNOTATION};
use super::rbac_rules::{combine, convert_access_rule, convert_subject, service_targets, Target};
use super::resource::{LegacyBody, LegacyKind, LegacyResource};
use super::types::{
    AccessRule, EnforcementMode, RbacConfig, RbacMode, RbacTarget, ServiceRoleBinding,
};
use crate::{FieldPath, Severity};

/// Where RBAC was enforced.
enum Scope {
    /// No RbacConfig among the inputs: bindings are converted as if enforced.
    Unknown,
    Off,
    On,
    Including(Targets),
    Excluding(Targets),
}

#[derive(Default)]
struct Targets {
    namespaces: BTreeSet<String>,
    /// `(namespace, short name)`.
    services: BTreeSet<(String, String)>,
}

impl Targets {
    fn has(&self, ns: &str, short: &str) -> bool {
        self.namespaces.contains(ns) || self.services.contains(&(ns.to_string(), short.to_string()))
    }
}

/// Which workloads of a namespace a namespace-wide ALLOW policy may cover without
/// switching on enforcement where there was none.
enum Coverage {
    All,
    Services(Vec<String>),
    Nothing,
}

impl Scope {
    fn service_enforced(&self, ns: &str, short: &str) -> bool {
        match self {
            Scope::Unknown | Scope::On => true,
            Scope::Off => false,
            Scope::Including(t) => t.has(ns, short),
            Scope::Excluding(t) => !t.has(ns, short),
        }
    }

    fn namespace_coverage(&self, ns: &str) -> Coverage {
        match self {
            Scope::Unknown | Scope::On => Coverage::All,
            Scope::Off => Coverage::Nothing,
            Scope::Including(t) if t.namespaces.contains(ns) => Coverage::All,
            Scope::Including(t) => {
                let services: Vec<String> = t
                    .services
                    .iter()
                    .filter(|(n, _)| n == ns)
                    .map(|(_, s)| s.clone())
                    .collect();
                if services.is_empty() {
                    Coverage::Nothing
                } else {
                    Coverage::Services(services)
                }
            }
            // Excluded services keep their allow-all policy, which ALLOW policies OR with.
            Scope::Excluding(t) if t.namespaces.contains(ns) => Coverage::Nothing,
            Scope::Excluding(_) => Coverage::All,
        }
    }
}

pub(super) fn convert_rbac(ctx: &mut Ctx<'_>, input: &[LegacyResource]) {
    let config = choose_config(ctx, input);
    let mut dry_run = false;
    let scope = match config {
        None => Scope::Unknown,
        Some((r, c)) => {
            dry_run = c.enforcement_mode == Some(EnforcementMode::Permissive);
            let scope = build_scope(ctx, r, c);
            emit_mode_policies(ctx, r, &scope, dry_run);
            scope
        }
    };
    let bindings: Vec<(&LegacyResource, &ServiceRoleBinding)> = input
        .iter()
        .filter_map(|r| match &r.body {
            LegacyBody::ServiceRoleBinding(b) => Some((r, b)),
            _ => None,
        })
        .collect();
    if let (Scope::Unknown, Some((first, _))) = (&scope, bindings.first()) {
        ctx.warn(
            first,
            FieldPath::root(),
            "no RbacConfig or ClusterRbacConfig among the inputs: ServiceRoleBindings are converted as if RBAC were ON; in the current API any ALLOW policy turns on default-deny for the workloads it selects",
        );
    }
    for (r, b) in bindings {
        convert_binding(ctx, input, r, b, &scope, dry_run);
    }
}

/// Istio read one config: the `ClusterRbacConfig` named `default`, else the
/// deprecated `RbacConfig` named `default`. Others are reported and ignored.
fn choose_config<'a>(
    ctx: &mut Ctx<'_>,
    input: &'a [LegacyResource],
) -> Option<(&'a LegacyResource, &'a RbacConfig)> {
    let configs: Vec<(&LegacyResource, &RbacConfig)> = input
        .iter()
        .filter_map(|r| match &r.body {
            LegacyBody::ClusterRbacConfig(c) | LegacyBody::RbacConfig(c) => Some((r, c)),
            _ => None,
        })
        .collect();
    let rank = |r: &LegacyResource| {
        (
            r.kind() != LegacyKind::ClusterRbacConfig,
            r.name != "default",
        )
    };
    let chosen = configs.iter().min_by_key(|(r, _)| rank(r)).copied()?;
    for (r, _) in &configs {
        if !std::ptr::eq(*r, chosen.0) {
            ctx.warn(
                r,
                FieldPath::root(),
                format!("Istio reads a single RbacConfig; {} is the one converted and this one is ignored", chosen.0.resource_ref()),
            );
        }
    }
    if chosen.0.name != "default" {
        ctx.warn(
            chosen.0,
            FieldPath::root().field("metadata").field("name"),
            "Istio only read the RbacConfig named \"default\"; converted anyway",
        );
    }
    Some(chosen)
}

fn build_scope(ctx: &mut Ctx<'_>, r: &LegacyResource, c: &RbacConfig) -> Scope {
    let spec = FieldPath::root().field("spec");
    let mut targets = |field: &str, t: Option<&RbacTarget>| {
        let mut out = Targets::default();
        let Some(t) = t else { return out };
        out.namespaces.extend(t.namespaces.iter().cloned());
        for (i, svc) in t.services.iter().enumerate() {
            match split_service(svc) {
                (short, Some(ns)) if !short.is_empty() => {
                    out.services.insert((ns.to_string(), short.to_string()));
                }
                _ => ctx.warn(
                    r,
                    spec.field(field).field("services").index(i),
                    format!("{svc:?} has no namespace; write the service's FQDN (name.namespace.svc.cluster.local). Left out"),
                ),
            }
        }
        out
    };
    match c.mode.unwrap_or_default() {
        RbacMode::Off => Scope::Off,
        RbacMode::On => Scope::On,
        RbacMode::OnWithInclusion => Scope::Including(targets("inclusion", c.inclusion.as_ref())),
        RbacMode::OnWithExclusion => Scope::Excluding(targets("exclusion", c.exclusion.as_ref())),
    }
}

fn dry_run_annotation(dry_run: bool) -> Option<Value> {
    dry_run.then(|| json!({ DRY_RUN_ANNOTATION: "true" }))
}

/// The policies that stand for the mode itself: allow-nothing where RBAC was on (in
/// the current API an ALLOW policy without rules denies everything not allowed by
/// another ALLOW policy) and allow-all to re-open excluded places.
fn emit_mode_policies(ctx: &mut Ctx<'_>, r: &LegacyResource, scope: &Scope, dry_run: bool) {
    let root = ctx.opts.root_namespace.clone();
    let src = || vec![LegacySource::of(r)];
    let allow_nothing = |ns: &str, name: &str, selector: Option<Value>| {
        let spec = selector.map_or_else(|| json!({}), |s| json!({ "selector": s }));
        object(
            "AuthorizationPolicy",
            ns,
            name,
            dry_run_annotation(dry_run),
            spec,
        )
    };
    let allow_all = |ns: &str, name: &str, selector: Option<Value>| {
        let mut spec = Map::new();
        if let Some(s) = selector {
            spec.insert("selector".into(), s);
        }
        spec.insert("rules".into(), json!([{}]));
        object("AuthorizationPolicy", ns, name, None, Value::Object(spec))
    };
    let spec = FieldPath::root().field("spec");
    match scope {
        Scope::Unknown => {}
        Scope::Off => ctx.note(
            r,
            Severity::Info,
            spec.field("mode"),
            "RBAC is OFF: nothing to enforce",
        ),
        Scope::On => ctx.emit(src(), allow_nothing(&root, "allow-nothing", None)),
        Scope::Including(t) => {
            if t.namespaces.is_empty() && t.services.is_empty() {
                ctx.warn(
                    r,
                    spec.field("inclusion"),
                    "ON_WITH_INCLUSION without inclusions enforces nothing",
                );
            }
            for ns in &t.namespaces {
                ctx.emit(src(), allow_nothing(ns, "allow-nothing", None));
            }
            for (ns, short) in &t.services {
                let w = ctx.workload(r, &spec.field("inclusion").field("services"), ns, short);
                let name = format!("allow-nothing-{short}");
                ctx.emit(
                    src(),
                    allow_nothing(ns, &name, Some(json!({ "matchLabels": w.selector }))),
                );
            }
        }
        Scope::Excluding(t) => {
            ctx.emit(src(), allow_nothing(&root, "allow-nothing", None));
            for ns in &t.namespaces {
                ctx.emit(src(), allow_all(ns, "allow-all", None));
            }
            for (ns, short) in &t.services {
                let w = ctx.workload(r, &spec.field("exclusion").field("services"), ns, short);
                let name = format!("allow-all-{short}");
                ctx.emit(
                    src(),
                    allow_all(ns, &name, Some(json!({ "matchLabels": w.selector }))),
                );
            }
        }
    }
}

fn convert_binding(
    ctx: &mut Ctx<'_>,
    input: &[LegacyResource],
    r: &LegacyResource,
    b: &ServiceRoleBinding,
    scope: &Scope,
    global_dry_run: bool,
) {
    let spec = FieldPath::root().field("spec");
    let ns = r.namespace.as_str();
    if matches!(scope, Scope::Off) {
        ctx.warn(r, FieldPath::root(), "RBAC is OFF, so this binding had no effect; converting it would start enforcing, so it is left out");
        return;
    }
    // The role: by roleRef, by 1.4's `role`, or inline `actions`.
    let role_name = match (&b.role_ref, &b.role) {
        (Some(rr), _) if rr.kind != "ServiceRole" => {
            ctx.warn(
                r,
                spec.field("roleRef").field("kind"),
                format!(
                    "roleRef.kind must be ServiceRole, not {:?}; not converted",
                    rr.kind
                ),
            );
            return;
        }
        (Some(rr), _) => Some(rr.name.clone()),
        (None, Some(role)) => Some(role.trim_start_matches('/').to_string()),
        (None, None) => None,
    };
    let (owner, rules, rules_path): (&LegacyResource, &[AccessRule], FieldPath) = match role_name {
        Some(name) => {
            let found = input.iter().find_map(|x| match &x.body {
                LegacyBody::ServiceRole(role) if x.namespace == ns && x.name == name => {
                    Some((x, role))
                }
                _ => None,
            });
            let Some((role_res, role)) = found else {
                ctx.warn(r, spec.field("roleRef").field("name"), format!("ServiceRole {ns}/{name} is not among the inputs; the binding is not converted"));
                return;
            };
            (role_res, &role.rules, spec.field("rules"))
        }
        None if !b.actions.is_empty() => (r, &b.actions, spec.field("actions")),
        None => {
            ctx.warn(
                r,
                spec.field("roleRef"),
                "no roleRef, role or actions: the binding grants nothing",
            );
            return;
        }
    };

    let mut subjects = Vec::new();
    for (i, s) in b.subjects.iter().enumerate() {
        if let Some(subj) = convert_subject(ctx, r, &spec.field("subjects").index(i), s) {
            subjects.push(subj);
        }
    }
    if subjects.is_empty() {
        ctx.warn(
            r,
            spec.field("subjects"),
            "no subject could be converted; the binding is left out (it grants nothing)",
        );
        return;
    }

    let mut groups: Vec<(Target, Vec<Value>)> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let rpath = rules_path.index(i);
        let Some(parts) = convert_access_rule(ctx, owner, &rpath, rule, ns) else {
            continue;
        };
        let new_rules = combine(&subjects, &parts);
        for target in service_targets(ctx, owner, &rpath.field("services"), &rule.services, ns) {
            let pos = match groups.iter().position(|(t, _)| *t == target) {
                Some(p) => p,
                None => {
                    groups.push((target, Vec::new()));
                    groups.len() - 1
                }
            };
            for nr in &new_rules {
                if !groups[pos].1.contains(nr) {
                    groups[pos].1.push(nr.clone());
                }
            }
        }
    }

    // Expand namespace-wide groups where RBAC covered only some services.
    let mut policies: Vec<(Option<String>, Vec<Value>)> = Vec::new();
    for (target, rules) in groups {
        match target {
            Target::Service(short) if scope.service_enforced(ns, &short) => policies.push((Some(short), rules)),
            Target::Service(short) => ctx.warn(
                r,
                FieldPath::root(),
                format!("RBAC was not enforced for service {short} in {ns}, so this binding had no effect on it; left out"),
            ),
            Target::Namespace => match scope.namespace_coverage(ns) {
                Coverage::All => policies.push((None, rules)),
                Coverage::Services(list) => {
                    for short in list {
                        policies.push((Some(short), rules.clone()));
                    }
                }
                Coverage::Nothing => ctx.warn(
                    r,
                    FieldPath::root(),
                    format!("RBAC was not enforced in namespace {ns}, so this binding had no effect there; left out"),
                ),
            },
        }
    }
    let single = policies.len() == 1;
    let dry_run = global_dry_run || b.mode == Some(EnforcementMode::Permissive);
    let mut sources = vec![LegacySource::of(r)];
    if !std::ptr::eq(owner, r) {
        sources.push(LegacySource::of(owner));
    }
    for (target, rules) in policies {
        if rules.is_empty() {
            continue;
        }
        let mut spec_out = Map::new();
        let name = match &target {
            Some(short) => {
                let w = ctx.workload(r, &spec, ns, short);
                spec_out.insert("selector".into(), json!({ "matchLabels": w.selector }));
                if single {
                    r.name.clone()
                } else {
                    format!("{}-{short}", r.name)
                }
            }
            None => r.name.clone(),
        };
        spec_out.insert("action".into(), json!("ALLOW"));
        spec_out.insert("rules".into(), Value::Array(rules));
        ctx.emit(
            sources.clone(),
            object(
                "AuthorizationPolicy",
                ns,
                &name,
                dry_run_annotation(dry_run),
                Value::Object(spec_out),
            ),
        );
    }
}
