//! From text to checked resources: parse, recognise the kind, check the schema, read
//! the typed body, apply Istio's webhook rules. Every problem becomes a [`Diagnostic`]
//! naming file, line, resource and field; a resource with any error is left out.

use std::sync::Arc;

use crate::diag::{Diagnostic, ResourceRef, Severity};
use crate::kind::{Family, Kind};
use crate::resource::{Body, ObjectMeta, Origin, Resource};
use crate::yaml::{from_node_at, parse_documents, Node, Notice};
use crate::FieldPath;

/// Settings for reading resources.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Namespace for resources that do not name one (istioctl's `-n`, default `default`).
    pub default_namespace: String,
    /// The mesh issues workload certificates (its control plane runs a CA). Only then do
    /// proxies hold the `default`/`ROOTCA` secrets that mesh mTLS needs, so only then
    /// does translation turn on auto mTLS (with MeshConfig `enableAutoMtls`) and accept
    /// mTLS on inbound ports no PeerAuthentication covers (Istio's default PERMISSIVE).
    pub workload_identities: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_namespace: "default".to_string(),
            workload_identities: false,
        }
    }
}

/// What reading one text produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Top-level keys every resource may carry besides its body.
const ENVELOPE_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "status"];

/// Reads every resource in `text` (multi-document YAML or JSON; `List` kinds expanded).
pub fn load_text(file: &str, text: &str, opts: &LoadOptions) -> Loaded {
    let mut out = Loaded::default();
    let file: Arc<str> = Arc::from(file);
    match parse_documents(text) {
        Ok(docs) => {
            for doc in docs {
                load_root(&file, Arc::new(doc.root), opts, &mut out);
            }
        }
        Err(e) => out.diagnostics.push(
            Diagnostic::error(
                FieldPath::root(),
                format!("YAML syntax error: {} (column {})", e.message, e.mark.col),
            )
            .with_location(Some(&file), Some(e.mark.line)),
        ),
    }
    out
}

/// Reads one document's root node.
pub fn load_node(file: &Arc<str>, root: &Node, opts: &LoadOptions, out: &mut Loaded) {
    load_root(file, Arc::new(root.clone()), opts, out);
}

/// Like [`load_node`], taking the tree without copying it (the resource keeps it).
fn load_root(file: &Arc<str>, node: Arc<Node>, opts: &LoadOptions, out: &mut Loaded) {
    let root: &Node = &node;
    let at = |line: u32| (Some(&**file), Some(line));
    if root.as_map().is_none() {
        let (f, l) = at(root.mark.line);
        out.diagnostics.push(
            Diagnostic::error(
                FieldPath::root(),
                format!(
                    "a resource must be a mapping with apiVersion and kind (got {})",
                    root.type_name()
                ),
            )
            .with_location(f, l),
        );
        return;
    }
    let api_version = root
        .get("apiVersion")
        .and_then(Node::as_str)
        .unwrap_or_default();
    let kind_text = root.get("kind").and_then(Node::as_str).unwrap_or_default();

    if kind_text.ends_with("List") && root.get("items").is_some() {
        for item in root.get("items").and_then(Node::as_seq).unwrap_or_default() {
            load_root(file, Arc::new(item.clone()), opts, out);
        }
        return;
    }

    let mut diags = Vec::new();
    // The book's RBAC chapter spells the kind `RBACConfig`; Istio's was `RbacConfig`.
    // (The legacy reader warns about the spelling.)
    let kind_text = if kind_text == "RBACConfig" && api_version.starts_with("rbac.istio.io/") {
        "RbacConfig"
    } else {
        kind_text
    };
    let kind = match Kind::resolve(api_version, kind_text) {
        Ok(k) => k,
        Err(e) => {
            let line = root.get("kind").unwrap_or(root).mark.line;
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str);
            let mut d = Diagnostic::error(FieldPath::root(), e.to_string());
            if let (Some(name), false) = (name, kind_text.is_empty()) {
                d = d.with_resource(ResourceRef {
                    kind: kind_text.to_string(),
                    namespace: String::new(),
                    name: name.into(),
                });
            }
            out.diagnostics
                .push(d.with_location(Some(file), Some(line)));
            return;
        }
    };

    let meta = read_meta(root, kind, opts, &mut diags);
    let reference = ResourceRef {
        kind: kind.kind_name().to_string(),
        namespace: meta.namespace.clone(),
        name: if meta.name.is_empty() {
            "<unnamed>".to_string()
        } else {
            meta.name.clone()
        },
    };
    let body = read_body(kind, root, &meta, &mut diags);

    let has_error = diags.iter().any(Diagnostic::is_error);
    for d in diags {
        let line = d.line.unwrap_or_else(|| {
            d.path
                .as_ref()
                .map_or(root.mark.line, |p| root.locate(p).mark.line)
        });
        out.diagnostics.push(
            d.with_resource(reference.clone())
                .with_location(Some(file), Some(line)),
        );
    }
    if let (false, Some(body)) = (has_error, body) {
        out.resources.push(Resource {
            kind,
            api_version: api_version.to_string(),
            meta,
            body,
            origin: Origin {
                file: file.clone(),
                line: root.mark.line,
            },
            node: node.clone(),
        });
    }
}

fn read_meta(
    root: &Node,
    kind: Kind,
    opts: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) -> ObjectMeta {
    let path = FieldPath::root().field("metadata");
    let mut notices = Vec::new();
    let mut meta = match root.get("metadata") {
        None => {
            diags.push(Diagnostic::error(
                path.clone(),
                "Required value: every resource needs metadata.name",
            ));
            ObjectMeta::default()
        }
        Some(node) => match from_node_at::<ObjectMeta>(node, path.clone(), Some(&mut notices)) {
            Ok(m) => {
                // Kubernetes metadata has many fields Spar does not read (uid, labels of
                // owners, ...); only a near-miss of one it does read deserves a warning.
                notices.retain(|n| {
                    matches!(
                        n,
                        Notice::UnknownField {
                            did_you_mean: Some(_),
                            ..
                        }
                    )
                });
                notices_to_diags(std::mem::take(&mut notices), diags);
                m
            }
            Err(e) => {
                diags.push(read_error(&e));
                ObjectMeta::default()
            }
        },
    };
    if meta.name.is_empty() && root.get("metadata").is_some() {
        diags.push(Diagnostic::error(
            path.field("name"),
            "Required value: name is required",
        ));
    } else if !meta.name.is_empty() && !crate::names::is_dns1123_subdomain(&meta.name) {
        diags.push(Diagnostic::error(
            path.field("name"),
            format!(
                "Invalid value: {:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                meta.name
            ),
        ));
    }
    if kind.is_namespaced() {
        if meta.namespace.is_empty() {
            meta.namespace = opts.default_namespace.clone();
        } else if !crate::names::is_k8s_label_name(&meta.namespace) {
            diags.push(Diagnostic::error(
                path.field("namespace"),
                format!(
                    "Invalid value: {:?}: a namespace must be a lowercase RFC 1123 label",
                    meta.namespace
                ),
            ));
        }
    } else {
        meta.namespace.clear();
    }
    for key in meta.labels.keys() {
        if let Err(msg) = crate::names::check_label_key(key) {
            diags.push(Diagnostic::error(path.field("labels").key(key), msg));
        }
    }
    for (key, value) in &meta.labels {
        if !crate::names::is_label_value(value) {
            diags.push(Diagnostic::error(
                path.field("labels").key(key),
                format!("Invalid value: {value:?}: a label value must be empty or up to 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric"),
            ));
        }
    }
    meta
}

/// A value that could not be read, at its path and line.
fn read_error(e: &crate::yaml::DeError) -> Diagnostic {
    Diagnostic::error(e.path.clone(), e.message.clone()).with_location(None, Some(e.mark.line))
}

fn notices_to_diags(notices: Vec<Notice>, diags: &mut Vec<Diagnostic>) {
    for n in notices {
        match n {
            Notice::UnknownField {
                path,
                mark,
                did_you_mean,
            } => {
                let msg = match did_you_mean {
                    Some(f) => format!("unknown field (ignored); did you mean `{f}`? Field names are case-sensitive"),
                    None => "unknown field (ignored); check the spelling against the API reference".to_string(),
                };
                diags.push(Diagnostic::warning(path, msg).with_location(None, Some(mark.line)));
            }
            Notice::DuplicateKey { path, mark } => diags.push(
                Diagnostic::warning(path, "key given more than once; the last value is used")
                    .with_location(None, Some(mark.line)),
            ),
        }
    }
}

fn warn_unknown_top_level(root: &Node, allowed: &[&str], diags: &mut Vec<Diagnostic>) {
    for (k, _) in root.as_map().unwrap_or_default() {
        if !ENVELOPE_KEYS.contains(&k.text.as_str()) && !allowed.contains(&k.text.as_str()) {
            diags.push(
                Diagnostic::warning(FieldPath::root().field(&k.text), "unknown field (ignored)")
                    .with_location(None, Some(k.mark.line)),
            );
        }
    }
}

/// Reads a typed value, turning read errors and notices into diagnostics.
fn read_typed<T: serde::de::DeserializeOwned>(
    node: &Node,
    base: FieldPath,
    warn_unknown: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let mut notices = Vec::new();
    let r = from_node_at::<T>(node, base, Some(&mut notices));
    if !warn_unknown {
        notices.retain(|n| matches!(n, Notice::DuplicateKey { .. }));
    }
    notices_to_diags(notices, diags);
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(read_error(&e));
            None
        }
    }
}

fn read_body(
    kind: Kind,
    root: &Node,
    meta: &ObjectMeta,
    diags: &mut Vec<Diagnostic>,
) -> Option<Body> {
    match kind.family() {
        Family::Istio => read_istio(kind, root, meta, diags),
        Family::Kubernetes => read_kubernetes(kind, root, diags),
        Family::Legacy => read_legacy(root, meta, diags),
        Family::Unsupported => {
            diags.push(Diagnostic::new(
                Severity::Warning,
                FieldPath::root(),
                format!(
                    "Spar reads Kubernetes Gateway API resources ({} {}) but does not apply them yet; use Istio's Gateway and VirtualService",
                    kind.group(),
                    kind.kind_name()
                ),
            ));
            Some(Body::Unsupported)
        }
    }
}

/// Reads a 2019 API resource; it is converted with the others of its kind once every
/// file is read (RBAC bindings need their roles and the RbacConfig).
fn read_legacy(root: &Node, meta: &ObjectMeta, diags: &mut Vec<Diagnostic>) -> Option<Body> {
    warn_unknown_top_level(root, &["spec"], diags);
    match crate::legacy::LegacyResource::from_document(root, None) {
        Ok(Some(doc)) => {
            diags.extend(doc.diagnostics.into_iter().map(|mut d| {
                // The loader names the resource and file itself.
                d.resource = None;
                d
            }));
            let mut resource = doc.resource;
            resource.namespace = meta.namespace.clone();
            Some(Body::Legacy(Box::new(resource)))
        }
        Ok(None) => None,
        Err(e) => {
            diags.push(Diagnostic::error(FieldPath::root(), e.to_string()));
            None
        }
    }
}

fn read_istio(
    kind: Kind,
    root: &Node,
    meta: &ObjectMeta,
    diags: &mut Vec<Diagnostic>,
) -> Option<Body> {
    warn_unknown_top_level(root, &["spec"], diags);
    let path = FieldPath::root().field("spec");
    // A kind whose CRD does not require `spec` reads a missing one as empty, as the
    // API server stores it (an AuthorizationPolicy without spec is allow-nothing).
    let empty = Node::new(crate::yaml::NodeKind::Map(Vec::new()), root.mark);
    let spec = match root.get("spec") {
        Some(spec) => spec,
        None => match crate::schema::missing_spec(kind.kind_name(), &path, root) {
            Some(d) => {
                diags.push(d);
                return None;
            }
            None => &empty,
        },
    };
    let schema_diags = crate::schema::validate_spec(kind.kind_name(), spec, &path);
    let schema_failed = schema_diags.iter().any(Diagnostic::is_error);
    diags.extend(schema_diags);
    if schema_failed {
        return None;
    }
    macro_rules! istio_body {
        ($($variant:ident),*) => {
            match kind {
                $(Kind::$variant => Body::$variant(Box::new(
                    read_typed::<crate::istio::types::$variant>(spec, path, true, diags)?,
                )),)*
                _ => return None,
            }
        };
    }
    let body = istio_body!(
        VirtualService,
        DestinationRule,
        Gateway,
        ServiceEntry,
        WorkloadEntry,
        WorkloadGroup,
        Sidecar,
        ProxyConfig,
        EnvoyFilter,
        PeerAuthentication,
        AuthorizationPolicy,
        RequestAuthentication,
        Telemetry,
        WasmPlugin,
        TrafficExtension
    );
    diags.extend(webhook(&body, meta));
    Some(body)
}

/// Istio's validating-webhook rules for the body's kind.
fn webhook(body: &Body, meta: &ObjectMeta) -> Vec<Diagnostic> {
    use crate::validate as v;
    let ctx = v::Ctx {
        namespace: &meta.namespace,
        name: &meta.name,
    };
    match body {
        Body::VirtualService(s) => v::check_virtual_service(s, &ctx),
        Body::DestinationRule(s) => v::check_destination_rule(s, &ctx),
        Body::Gateway(s) => v::check_gateway(s, &ctx),
        Body::ServiceEntry(s) => v::check_service_entry(s, &ctx),
        Body::Sidecar(s) => v::check_sidecar(s, &ctx),
        Body::WorkloadEntry(s) => v::check_workload_entry(s, &ctx),
        Body::WorkloadGroup(s) => v::check_workload_group(s, &ctx),
        Body::EnvoyFilter(s) => v::check_envoy_filter(s, &ctx),
        Body::ProxyConfig(s) => v::check_proxy_config(s, &ctx),
        Body::PeerAuthentication(s) => v::check_peer_authentication(s, &ctx),
        Body::AuthorizationPolicy(s) => v::check_authorization_policy(s, &ctx),
        Body::RequestAuthentication(s) => v::check_request_authentication(s, &ctx),
        Body::Telemetry(s) => v::check_telemetry(s, &ctx),
        Body::WasmPlugin(s) => v::check_wasm(s, &ctx),
        Body::TrafficExtension(s) => v::check_traffic_extension(s, &ctx),
        _ => Vec::new(),
    }
}

/// Reads a Kubernetes object minus its envelope; unknown fields are warned as
/// `kubectl --validate=warn` would (the k8s types accept every field Kubernetes has).
fn read_k8s<T: serde::de::DeserializeOwned>(root: &Node, diags: &mut Vec<Diagnostic>) -> Option<T> {
    let mut notices = Vec::new();
    let r = crate::k8s::read_object::<T>(root, Some(&mut notices));
    notices_to_diags(notices, diags);
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(read_error(&e));
            None
        }
    }
}

fn read_kubernetes(kind: Kind, root: &Node, diags: &mut Vec<Diagnostic>) -> Option<Body> {
    let root_path = FieldPath::root();
    let body = match kind {
        Kind::Service => {
            let svc: crate::k8s::Service = read_k8s(root, diags)?;
            diags.extend(crate::k8s::validate_service(&svc, &root_path));
            Body::Service(Box::new(svc))
        }
        Kind::Deployment => {
            let d: crate::k8s::Deployment = read_k8s(root, diags)?;
            diags.extend(crate::k8s::validate_deployment(&d, &root_path));
            Body::Deployment(Box::new(d))
        }
        Kind::Pod => {
            let p: crate::k8s::Pod = read_k8s(root, diags)?;
            diags.extend(crate::k8s::validate_pod(&p, &root_path));
            Body::Pod(Box::new(p))
        }
        Kind::Endpoints => Body::Endpoints(Box::new(read_k8s(root, diags)?)),
        Kind::EndpointSlice => Body::EndpointSlice(Box::new(read_k8s(root, diags)?)),
        Kind::Namespace => Body::Namespace(Box::new(read_k8s(root, diags)?)),
        Kind::ServiceAccount => Body::ServiceAccount(Box::new(read_k8s(root, diags)?)),
        // Spar reads only `data` of these; their other fields are not worth warning about.
        Kind::ConfigMap => Body::ConfigMap(Box::new(read_typed(root, root_path, false, diags)?)),
        Kind::Secret => Body::Secret(Box::new(read_typed(root, root_path, false, diags)?)),
        _ => return None,
    };
    Some(body)
}
