//! Subjects, access rules and service names of RBAC roles and bindings, in the
//! current API's terms.

use serde_json::{json, Map, Value};

use super::convert::{split_service, Ctx};
use super::resource::LegacyResource;
use super::types::{AccessRule, Subject};
use crate::{FieldPath, Severity};

/// What an AuthorizationPolicy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Namespace,
    Service(String),
}

/// An access rule's `to.operation` (if any) and `when` conditions.
pub(super) struct RuleParts {
    pub op: Option<Map<String, Value>>,
    pub when: Vec<Value>,
}

/// Attributes the current API accepts in `when` conditions.
fn when_key_supported(key: &str) -> bool {
    const EXACT: [&str; 10] = [
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    ];
    const PREFIXES: [&str; 3] = [
        "request.headers[",
        "request.auth.claims[",
        "experimental.envoy.filters.",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

fn strip_spiffe(p: &str) -> String {
    p.strip_prefix("spiffe://").unwrap_or(p).to_string()
}

/// A converted subject: a `source` (AND of its fields) and extra `when` conditions.
pub(super) struct Subj {
    source: Map<String, Value>,
    when: Vec<Value>,
}

/// Adds values to a `source` field, or, when the field is already taken by another
/// legacy field (which the old API AND-ed), as a `when` condition on the same attribute.
fn add_source(s: &mut Subj, field: &str, key: &str, values: Vec<String>) {
    if values.is_empty() {
        return;
    }
    if s.source.contains_key(field) {
        s.when.push(json!({ "key": key, "values": values }));
    } else {
        s.source.insert(field.into(), json!(values));
    }
}

pub(super) fn convert_subject(
    ctx: &mut Ctx<'_>,
    r: &LegacyResource,
    path: &FieldPath,
    s: &Subject,
) -> Option<Subj> {
    let mut out = Subj {
        source: Map::new(),
        when: Vec::new(),
    };
    // `user: "*"` matched every caller, authenticated or not, so it adds no condition.
    if let Some(user) = s.user.as_deref().filter(|u| *u != "*") {
        add_source(
            &mut out,
            "principals",
            "source.principal",
            vec![strip_spiffe(user)],
        );
    }
    add_source(
        &mut out,
        "principals",
        "source.principal",
        s.names.iter().map(|n| strip_spiffe(n)).collect(),
    );
    add_source(
        &mut out,
        "notPrincipals",
        "source.principal",
        s.not_names.iter().map(|n| strip_spiffe(n)).collect(),
    );
    add_source(
        &mut out,
        "namespaces",
        "source.namespace",
        s.namespaces.clone(),
    );
    add_source(
        &mut out,
        "notNamespaces",
        "source.namespace",
        s.not_namespaces.clone(),
    );
    add_source(&mut out, "ipBlocks", "source.ip", s.ips.clone());
    add_source(&mut out, "notIpBlocks", "source.ip", s.not_ips.clone());
    let groups: Vec<&String> = s.group.iter().chain(&s.groups).collect();
    if !groups.is_empty() {
        out.when
            .push(json!({ "key": "request.auth.claims[groups]", "values": groups }));
    }
    if !s.not_groups.is_empty() {
        out.when
            .push(json!({ "key": "request.auth.claims[groups]", "notValues": s.not_groups }));
    }
    for (key, value) in &s.properties {
        match key.as_str() {
            "source.principal" | "source.user" => add_source(
                &mut out,
                "principals",
                "source.principal",
                vec![strip_spiffe(value)],
            ),
            "source.namespace" => add_source(
                &mut out,
                "namespaces",
                "source.namespace",
                vec![value.clone()],
            ),
            "source.ip" => add_source(&mut out, "ipBlocks", "source.ip", vec![value.clone()]),
            "request.auth.principal" => add_source(
                &mut out,
                "requestPrincipals",
                "request.auth.principal",
                vec![value.clone()],
            ),
            k if when_key_supported(k) => out.when.push(json!({ "key": k, "values": [value] })),
            k => {
                ctx.warn(
                    r,
                    path.field("properties").key(k),
                    format!("property {k:?} has no equivalent in the current API; this subject is left out (the access it had is denied)"),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// Every (subject, rule) pair, with subjects that are pure sources sharing one rule.
pub(super) fn combine(subjects: &[Subj], parts: &RuleParts) -> Vec<Value> {
    let (op, when) = (parts.op.as_ref(), parts.when.as_slice());
    let rule = |from: Option<Vec<Value>>, extra_when: &[Value]| {
        let mut out = Map::new();
        if let Some(from) = from {
            out.insert("from".into(), Value::Array(from));
        }
        if let Some(op) = op {
            out.insert("to".into(), json!([{ "operation": op }]));
        }
        let all_when: Vec<Value> = when.iter().chain(extra_when).cloned().collect();
        if !all_when.is_empty() {
            out.insert("when".into(), Value::Array(all_when));
        }
        Value::Object(out)
    };
    if subjects
        .iter()
        .any(|s| s.source.is_empty() && s.when.is_empty())
    {
        return vec![rule(None, &[])];
    }
    let mut out = Vec::new();
    let plain: Vec<Value> = subjects
        .iter()
        .filter(|s| s.when.is_empty())
        .map(|s| json!({ "source": s.source }))
        .collect();
    if !plain.is_empty() {
        out.push(rule(Some(plain), &[]));
    }
    for s in subjects.iter().filter(|s| !s.when.is_empty()) {
        let from = (!s.source.is_empty()).then(|| vec![json!({ "source": s.source })]);
        out.push(rule(from, &s.when));
    }
    out
}

/// The operation and conditions of an access rule; `None` when it cannot be expressed
/// (it is then left out, which denies what it allowed rather than allowing more).
pub(super) fn convert_access_rule(
    ctx: &mut Ctx<'_>,
    owner: &LegacyResource,
    path: &FieldPath,
    rule: &AccessRule,
    ns: &str,
) -> Option<RuleParts> {
    let mut op = Map::new();
    let any = |v: &[String]| v.iter().any(|x| x == "*");
    let mut put = |field: &str, values: Vec<String>| {
        if !values.is_empty() {
            op.insert(field.into(), json!(values));
        }
    };
    put("hosts", rule.hosts.clone());
    put("notHosts", rule.not_hosts.clone());
    put(
        "paths",
        if any(&rule.paths) {
            Vec::new()
        } else {
            rule.paths.clone()
        },
    );
    put("notPaths", rule.not_paths.clone());
    put(
        "methods",
        if any(&rule.methods) {
            Vec::new()
        } else {
            rule.methods.clone()
        },
    );
    put("notMethods", rule.not_methods.clone());
    put("ports", rule.ports.iter().map(i32::to_string).collect());
    put(
        "notPorts",
        rule.not_ports.iter().map(i32::to_string).collect(),
    );
    let mut when = Vec::new();
    for (i, c) in rule.constraints.iter().enumerate() {
        let cpath = path.field("constraints").index(i);
        let key = c.key.as_str();
        if key == "destination.namespace" {
            if c.values.iter().any(|v| v == ns || v == "*") {
                continue;
            }
            ctx.note(owner, Severity::Info, cpath, format!("never matched: a ServiceRole in {ns} only covers services in {ns}; rule left out"));
            return None;
        }
        if !when_key_supported(key) {
            let hint = if key.starts_with("destination.labels[") {
                " (split the policy by workload selector instead)"
            } else {
                ""
            };
            ctx.warn(
                owner,
                cpath.field("key"),
                format!("constraint {key:?} has no equivalent in the current API{hint}; this rule is left out, so the access it granted is denied"),
            );
            return None;
        }
        when.push(json!({ "key": key, "values": c.values }));
    }
    Some(RuleParts {
        op: (!op.is_empty()).then_some(op),
        when,
    })
}

/// Glob as the old API matched service names: `*`, `prefix*`, `*suffix` or exact.
fn glob(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else {
        pattern == value
    }
}

/// The workloads a rule's `services` mean in namespace `ns`.
pub(super) fn service_targets(
    ctx: &mut Ctx<'_>,
    owner: &LegacyResource,
    path: &FieldPath,
    services: &[String],
    ns: &str,
) -> Vec<Target> {
    if services.is_empty() {
        ctx.warn(
            owner,
            path.clone(),
            "Istio required at least one service; this rule grants nothing",
        );
        return Vec::new();
    }
    let domain = ctx.opts.cluster_domain.clone();
    let known: Vec<String> = ctx
        .opts
        .services
        .iter()
        .filter(|s| s.namespace == ns)
        .map(|s| s.name.clone())
        .collect();
    let mut out = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let add = |out: &mut Vec<Target>, t: Target| {
            if !out.contains(&t) {
                out.push(t);
            }
        };
        if s == "*" {
            add(&mut out, Target::Namespace);
        } else if s.contains('*') {
            let covers_namespace = s.strip_prefix('*').is_some_and(|suffix| {
                suffix.starts_with('.') && format!(".{ns}.svc.{domain}").ends_with(suffix)
            });
            if covers_namespace {
                add(&mut out, Target::Namespace);
            } else if !known.is_empty() {
                for name in known
                    .iter()
                    .filter(|n| glob(s, &format!("{n}.{ns}.svc.{domain}")))
                {
                    add(&mut out, Target::Service(name.clone()));
                }
            } else {
                ctx.warn(
                    owner,
                    path.index(i),
                    format!("{s:?} matches services by name pattern; without the Services the pods it means are unknown, so it is left out"),
                );
            }
        } else {
            match split_service(s) {
                (_, Some(other)) if other != ns => ctx.warn(
                    owner,
                    path.index(i),
                    format!("{s:?} is in namespace {other:?}, but a ServiceRole applies only in its own namespace {ns:?}; left out"),
                ),
                (short, _) => add(&mut out, Target::Service(short.to_string())),
            }
        }
    }
    out
}
