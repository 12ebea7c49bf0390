//! `Policy` / `MeshPolicy` → PeerAuthentication, RequestAuthentication and, for
//! required origins, a DENY AuthorizationPolicy.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::convert::{object, split_service, Ctx, LegacySource, PeerAuthn};
use super::resource::LegacyResource;
use super::types::{Jwt, MtlsMode, Policy, PrincipalBinding, StringMatch};
use crate::{FieldPath, Severity};

/// Where the converted resources apply: a whole namespace or selected pods, all ports
/// or some.
struct Scope<'s> {
    namespace: &'s str,
    selector: Option<BTreeMap<String, String>>,
    ports: Option<Vec<u32>>,
    /// Name for RequestAuthentication / AuthorizationPolicy (`<base>-require-jwt`).
    base: String,
}

pub(super) fn convert_policy(ctx: &mut Ctx<'_>, r: &LegacyResource, p: &Policy, mesh: bool) {
    let spec = FieldPath::root().field("spec");
    let root = ctx.opts.root_namespace.clone();
    let namespace = if mesh {
        root.as_str()
    } else {
        r.namespace.as_str()
    };
    if mesh && !p.targets.is_empty() {
        ctx.warn(
            r,
            spec.field("targets"),
            "a MeshPolicy cannot have targets (Istio refused it); nothing is converted",
        );
        return;
    }
    if p.targets.is_empty() && r.name != "default" {
        let what = if mesh {
            "a MeshPolicy"
        } else {
            "a Policy without targets"
        };
        ctx.warn(
            r,
            FieldPath::root().field("metadata").field("name"),
            format!(
                "Istio only accepted {what} named \"default\"; converted as the {} default anyway",
                if mesh { "mesh-wide" } else { "namespace-wide" }
            ),
        );
    }
    if p.principal_binding == Some(PrincipalBinding::UseOrigin) {
        ctx.warn(
            r,
            spec.field("principalBinding"),
            "USE_ORIGIN made the JWT's iss/sub the principal that ServiceRoleBindings matched; the current API keeps them apart: match it with `requestPrincipals` (iss/sub), not `principals`, in AuthorizationPolicies",
        );
    }
    let mode = peer_mode(ctx, r, p, &spec);
    let source = LegacySource::of(r);

    if p.targets.is_empty() {
        ctx.peer(PeerAuthn {
            namespace: namespace.to_string(),
            name: "default".to_string(),
            selector: None,
            mode: Some(mode),
            ports: BTreeMap::new(),
            source: source.clone(),
        });
        let scope = Scope {
            namespace,
            selector: None,
            ports: None,
            base: r.name.clone(),
        };
        convert_origins(ctx, r, p, &scope);
        return;
    }
    for (i, t) in p.targets.iter().enumerate() {
        let tpath = spec.field("targets").index(i);
        let (short, svc_ns) = split_service(&t.name);
        if short.is_empty() {
            ctx.warn(
                r,
                tpath.field("name"),
                "a target needs a service name; skipped",
            );
            continue;
        }
        if let Some(other) = svc_ns.filter(|ns| *ns != namespace) {
            ctx.warn(
                r,
                tpath.field("name"),
                format!("names a service in namespace {other:?}, but a Policy applies only in its own namespace {namespace:?}; skipped"),
            );
            continue;
        }
        let w = ctx.workload(r, &tpath.field("name"), namespace, short);
        let base = if p.targets.len() == 1 {
            r.name.clone()
        } else {
            format!("{}-{short}", r.name)
        };
        let mut ports = Vec::new();
        let mut unresolved = false;
        for (j, port) in t.ports.iter().enumerate() {
            let ppath = tpath.field("ports").index(j);
            match ctx.workload_port(r, &ppath, &w, port.number, port.name.as_deref()) {
                Ok(n) => ports.push(n),
                Err(why) => {
                    unresolved = true;
                    ctx.warn(
                        r,
                        ppath,
                        format!("{why}; this target is not converted (a mode for all ports would be wrong): add the Service to the conversion, or write portLevelMtls with the container port"),
                    );
                }
            }
        }
        if unresolved {
            continue;
        }
        let port_modes: BTreeMap<u32, &'static str> = ports.iter().map(|p| (*p, mode)).collect();
        ctx.peer(PeerAuthn {
            namespace: namespace.to_string(),
            name: base.clone(),
            selector: Some(w.selector.clone()),
            mode: ports.is_empty().then_some(mode),
            ports: port_modes,
            source: source.clone(),
        });
        let scope = Scope {
            namespace,
            selector: Some(w.selector),
            ports: (!ports.is_empty()).then_some(ports),
            base,
        };
        convert_origins(ctx, r, p, &scope);
    }
}

/// The mTLS mode the policy asks of peers.
fn peer_mode(ctx: &mut Ctx<'_>, r: &LegacyResource, p: &Policy, spec: &FieldPath) -> &'static str {
    for (i, peer) in p.peers.iter().enumerate() {
        if peer.jwt.is_some() {
            ctx.warn(
                r,
                spec.field("peers").index(i).field("jwt"),
                "peer JWT authentication was never implemented by Istio; ignored",
            );
        }
    }
    let Some(mtls) = p.peers.iter().find_map(|peer| peer.mtls.as_ref()) else {
        ctx.warn(
            r,
            spec.field("peers"),
            "no mTLS peer method: Istio accepted only plain text for these workloads, so the conversion DISABLEs mTLS (use PERMISSIVE if clients already send mTLS)",
        );
        return "DISABLE";
    };
    match mtls.effective_mode() {
        MtlsMode::Strict if p.peer_is_optional => {
            ctx.warn(
                r,
                spec.field("peerIsOptional"),
                "peerIsOptional accepted requests without mTLS: converted to PERMISSIVE",
            );
            "PERMISSIVE"
        }
        MtlsMode::Strict => "STRICT",
        MtlsMode::Permissive => "PERMISSIVE",
    }
}

fn selector_spec(scope: &Scope<'_>) -> Map<String, Value> {
    let mut spec = Map::new();
    if let Some(sel) = &scope.selector {
        spec.insert("selector".into(), json!({ "matchLabels": sel }));
    }
    spec
}

fn convert_origins(ctx: &mut Ctx<'_>, r: &LegacyResource, p: &Policy, scope: &Scope<'_>) {
    let spec = FieldPath::root().field("spec");
    let mut jwts = Vec::new();
    for (i, o) in p.origins.iter().enumerate() {
        match &o.jwt {
            Some(j) => jwts.push((i, j)),
            None => ctx.warn(
                r,
                spec.field("origins").index(i),
                "an origin without `jwt` authenticates nothing; ignored",
            ),
        }
    }
    if jwts.is_empty() {
        return;
    }
    let rules: Vec<Value> = jwts
        .iter()
        .map(|(i, j)| jwt_rule(ctx, r, &spec.field("origins").index(*i).field("jwt"), j))
        .collect();
    let mut ra = selector_spec(scope);
    ra.insert("jwtRules".into(), Value::Array(rules));
    let source = vec![LegacySource::of(r)];
    ctx.emit(
        source.clone(),
        object(
            "RequestAuthentication",
            scope.namespace,
            &scope.base,
            None,
            Value::Object(ra),
        ),
    );

    if p.origin_is_optional {
        return;
    }
    // A token that is present is checked by RequestAuthentication; a missing one was
    // rejected by the old API but is let through by the new one. A DENY policy restores
    // that: DENY is evaluated before, and regardless of, any ALLOW policy, so the
    // requirement holds together with the RBAC bindings as it did before.
    let mut deny_rules: Vec<Value> = Vec::new();
    for (i, j) in &jwts {
        let jpath = spec.field("origins").index(*i).field("jwt");
        let to = trigger_operations(ctx, r, &jpath, j, scope.ports.as_deref());
        let mut rule = Map::new();
        rule.insert(
            "from".into(),
            json!([{ "source": { "notRequestPrincipals": ["*"] } }]),
        );
        if !to.is_empty() {
            rule.insert("to".into(), Value::Array(to));
        }
        let rule = Value::Object(rule);
        if !deny_rules.contains(&rule) {
            deny_rules.push(rule);
        }
    }
    // A rule without `to` covers every request; the others add nothing.
    if let Some(all) = deny_rules.iter().find(|r| r.get("to").is_none()).cloned() {
        deny_rules = vec![all];
    }
    let mut ap = selector_spec(scope);
    ap.insert("action".into(), json!("DENY"));
    ap.insert("rules".into(), Value::Array(deny_rules));
    let name = format!("{}-require-jwt", scope.base);
    ctx.emit(
        source,
        object(
            "AuthorizationPolicy",
            scope.namespace,
            &name,
            None,
            Value::Object(ap),
        ),
    );
}

fn jwt_rule(ctx: &mut Ctx<'_>, r: &LegacyResource, path: &FieldPath, j: &Jwt) -> Value {
    if j.issuer.is_empty() {
        ctx.warn(
            r,
            path.field("issuer"),
            "RequestAuthentication requires an issuer; fill it in before applying",
        );
    }
    let mut rule = Map::new();
    rule.insert("issuer".into(), json!(j.issuer));
    if !j.audiences.is_empty() {
        rule.insert("audiences".into(), json!(j.audiences));
    }
    if let Some(uri) = &j.jwks_uri {
        rule.insert("jwksUri".into(), json!(uri));
    }
    if let Some(jwks) = &j.jwks {
        rule.insert("jwks".into(), json!(jwks));
    }
    if !j.jwt_headers.is_empty() {
        // The old API read the bare token from these headers; without `prefix` the
        // new one does the same.
        let headers: Vec<Value> = j.jwt_headers.iter().map(|h| json!({ "name": h })).collect();
        rule.insert("fromHeaders".into(), Value::Array(headers));
    }
    if !j.jwt_params.is_empty() {
        rule.insert("fromParams".into(), json!(j.jwt_params));
    }
    Value::Object(rule)
}

/// The `to` entries a JWT's trigger rules select (empty: every request). Each trigger
/// rule becomes one operation (`paths` = included, `notPaths` = excluded); `ports`
/// restricts all of them when the legacy target named ports.
fn trigger_operations(
    ctx: &mut Ctx<'_>,
    r: &LegacyResource,
    path: &FieldPath,
    j: &Jwt,
    ports: Option<&[u32]>,
) -> Vec<Value> {
    let mut ops: Vec<Map<String, Value>> = Vec::new();
    for (i, t) in j.trigger_rules.iter().enumerate() {
        let tpath = path.field("triggerRules").index(i);
        let included: Option<Vec<String>> = t.included_paths.iter().map(path_pattern).collect();
        let excluded: Option<Vec<String>> = t.excluded_paths.iter().map(path_pattern).collect();
        let (Some(included), Some(excluded)) = (included, excluded) else {
            ctx.warn(
                r,
                tpath,
                "regex (or empty) path matches have no equivalent in AuthorizationPolicy; the token is now required on every path of this policy (stricter than before)",
            );
            ops.clear();
            break;
        };
        let mut op = Map::new();
        if !included.is_empty() {
            op.insert("paths".into(), json!(included));
        }
        if !excluded.is_empty() {
            op.insert("notPaths".into(), json!(excluded));
        }
        if op.is_empty() {
            // An empty trigger rule matches every request.
            ops.clear();
            break;
        }
        ops.push(op);
    }
    if let Some(ports) = ports {
        let ports: Vec<String> = ports.iter().map(u32::to_string).collect();
        if ops.is_empty() {
            ops.push(Map::new());
        }
        for op in &mut ops {
            op.insert("ports".into(), json!(ports));
        }
    }
    if !j.trigger_rules.is_empty() || ports.is_some() {
        ctx.note(
            r,
            Severity::Info,
            path.clone(),
            "RequestAuthentication now validates a token on every path; only the requirement to present one follows the trigger rules and ports",
        );
    }
    ops.into_iter()
        .map(|op| json!({ "operation": op }))
        .collect()
}

/// An AuthorizationPolicy path pattern (`/x`, `/x*`, `*x`); `None` for a regex or an
/// empty match.
fn path_pattern(m: &StringMatch) -> Option<String> {
    m.exact
        .clone()
        .or_else(|| m.prefix.as_ref().map(|p| format!("{p}*")))
        .or_else(|| m.suffix.as_ref().map(|s| format!("*{s}")))
}
