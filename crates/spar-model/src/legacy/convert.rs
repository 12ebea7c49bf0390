//! The conversion driver: options, output, and what the authn and RBAC parts share
//! (service names, workload selectors, ports, merging of PeerAuthentications).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::resource::{LegacyBody, LegacyResource};
use super::{authn, rbac};
use crate::k8s::{IntOrString, Service};
use crate::{Diagnostic, FieldPath, ResourceRef, Severity};

pub const SECURITY_API_VERSION: &str = "security.istio.io/v1";
/// Marks an AuthorizationPolicy as evaluated and logged but not enforced.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// A Kubernetes Service the conversion may consult: its selector replaces the
/// `app: <name>` assumption and its ports map service ports to workload ports.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownService {
    pub namespace: String,
    pub name: String,
    pub service: Service,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvertOptions {
    /// Where mesh-wide policies go (`rootNamespace` of the mesh config).
    pub root_namespace: String,
    /// The cluster's DNS domain, for service FQDNs (`cluster.local`).
    pub cluster_domain: String,
    pub services: Vec<KnownService>,
}

impl ConvertOptions {
    pub fn new(root_namespace: &str) -> Self {
        ConvertOptions {
            root_namespace: root_namespace.to_string(),
            cluster_domain: "cluster.local".to_string(),
            services: Vec::new(),
        }
    }
}

/// The legacy resource a converted one came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacySource {
    pub resource: ResourceRef,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl LegacySource {
    pub fn of(r: &LegacyResource) -> Self {
        LegacySource {
            resource: r.resource_ref(),
            file: r.file.clone(),
            line: r.line,
        }
    }

    fn is(&self, r: &LegacyResource) -> bool {
        self.resource == r.resource_ref() && self.file == r.file && self.line == r.line
    }

    pub(super) fn diag(&self, d: Diagnostic) -> Diagnostic {
        d.with_resource(self.resource.clone())
            .with_location(self.file.as_deref(), self.line)
    }
}

/// A modern resource (`apiVersion`, `kind`, `metadata`, `spec`) and its legacy sources.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedResource {
    pub value: Value,
    pub sources: Vec<LegacySource>,
}

impl ConvertedResource {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversionOutput {
    pub resources: Vec<ConvertedResource>,
    /// For every legacy resource a deprecation warning showing its conversion, then
    /// the judgement calls and losses specific to it.
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render the converted resources as YAML: {0}")]
pub struct ConvertError(#[from] serde_saphyr::ser::Error);

impl ConversionOutput {
    /// The converted resources as one multi-document YAML stream.
    pub fn to_yaml(&self) -> Result<String, ConvertError> {
        let values: Vec<&Value> = self.resources.iter().map(|r| &r.value).collect();
        render(&values)
    }

    pub fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&ConvertedResource> {
        self.resources
            .iter()
            .find(|r| r.kind() == kind && r.namespace() == namespace && r.name() == name)
    }
}

fn render(values: &[&Value]) -> Result<String, ConvertError> {
    Ok(serde_saphyr::to_string_multiple(values)?)
}

/// Converts with default options: no Services known, cluster domain `cluster.local`.
pub fn convert(input: &[LegacyResource], root_namespace: &str) -> ConversionOutput {
    convert_with(input, &ConvertOptions::new(root_namespace))
}

/// Converts legacy resources to `security.istio.io/v1` ones. Pass all legacy resources
/// of the mesh at once: RBAC bindings depend on the RbacConfig and on their roles.
pub fn convert_with(input: &[LegacyResource], opts: &ConvertOptions) -> ConversionOutput {
    let mut ctx = Ctx {
        opts,
        items: Vec::new(),
        diags: Vec::new(),
    };
    for r in input {
        match &r.body {
            LegacyBody::Policy(p) => authn::convert_policy(&mut ctx, r, p, false),
            LegacyBody::MeshPolicy(p) => authn::convert_policy(&mut ctx, r, p, true),
            _ => {}
        }
    }
    rbac::convert_rbac(&mut ctx, input);
    let (resources, found) = ctx.finish();
    // A role shared by several bindings would report the same finding for each.
    let mut specific: Vec<Diagnostic> = Vec::new();
    for d in found {
        if !specific.contains(&d) {
            specific.push(d);
        }
    }

    let mut diagnostics = Vec::new();
    for r in input {
        diagnostics.push(deprecation(r, &resources));
        let (mine, rest): (Vec<_>, Vec<_>) = specific.into_iter().partition(|d| {
            d.resource.as_ref() == Some(&r.resource_ref()) && d.file == r.file && d.line == r.line
        });
        diagnostics.extend(mine);
        specific = rest;
    }
    diagnostics.extend(specific);
    ConversionOutput {
        resources,
        diagnostics,
    }
}

fn deprecation(r: &LegacyResource, resources: &[ConvertedResource]) -> Diagnostic {
    let kind = r.kind();
    let mine: Vec<&Value> = resources
        .iter()
        .filter(|c| c.sources.iter().any(|s| s.is(r)))
        .map(|c| &c.value)
        .collect();
    let head = format!("{}/{kind} was removed in Istio 1.6", kind.api_version());
    let msg = if mine.is_empty() {
        match kind {
            super::LegacyKind::ServiceRole => format!("{head}; a ServiceRole takes effect only through its ServiceRoleBindings, which carry its rules when converted"),
            _ => format!("{head}; it converts to nothing (see the other findings for why)"),
        }
    } else {
        let yaml = render(&mine).unwrap_or_else(|e| e.to_string());
        format!(
            "{head}; Spar reads it as the following (apply this instead):\n{}",
            yaml.trim_end()
        )
    };
    r.diag(Diagnostic::warning(FieldPath::root(), msg))
}

/// A PeerAuthentication being built; those for the same workloads are merged.
#[derive(Debug, Clone)]
pub(super) struct PeerAuthn {
    pub namespace: String,
    pub name: String,
    pub selector: Option<BTreeMap<String, String>>,
    pub mode: Option<&'static str>,
    pub ports: BTreeMap<u32, &'static str>,
    pub source: LegacySource,
}

pub(super) enum Pending {
    Ready(ConvertedResource),
    Peer(PeerAuthn),
}

/// Where a legacy policy's target lives, and how the modern one selects its pods.
pub(super) struct Workload<'a> {
    pub short: String,
    pub selector: BTreeMap<String, String>,
    pub service: Option<&'a KnownService>,
}

pub(super) struct Ctx<'a> {
    pub opts: &'a ConvertOptions,
    pub items: Vec<Pending>,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    pub fn note(
        &mut self,
        r: &LegacyResource,
        severity: Severity,
        path: FieldPath,
        msg: impl Into<String>,
    ) {
        self.diags
            .push(r.diag(Diagnostic::new(severity, path, msg)));
    }

    pub fn warn(&mut self, r: &LegacyResource, path: FieldPath, msg: impl Into<String>) {
        self.note(r, Severity::Warning, path, msg);
    }

    pub fn emit(&mut self, sources: Vec<LegacySource>, value: Value) {
        self.items
            .push(Pending::Ready(ConvertedResource { value, sources }));
    }

    pub fn peer(&mut self, p: PeerAuthn) {
        self.items.push(Pending::Peer(p));
    }

    pub fn known(&self, namespace: &str, short: &str) -> Option<&'a KnownService> {
        self.opts
            .services
            .iter()
            .find(|s| s.namespace == namespace && s.name == short)
    }

    /// The pods behind service `short` in `namespace`: the Service's selector when it
    /// was given, else `app: <short>` (reported once per resource as an assumption).
    pub fn workload(
        &mut self,
        r: &LegacyResource,
        path: &FieldPath,
        namespace: &str,
        short: &str,
    ) -> Workload<'a> {
        let service = self.known(namespace, short);
        let selector = match service {
            Some(s) if !s.service.spec.selector.is_empty() => s.service.spec.selector.clone(),
            found => {
                let why = if found.is_some() {
                    "has no selector"
                } else {
                    "was not given to the conversion"
                };
                self.note(
                    r,
                    Severity::Info,
                    path.clone(),
                    format!(
                        "the current API selects pods, not services: Service {namespace}/{short} {why}, so its pods are assumed to carry the label app={short}"
                    ),
                );
                BTreeMap::from([("app".to_string(), short.to_string())])
            }
        };
        Workload {
            short: short.to_string(),
            selector,
            service,
        }
    }

    /// Maps a legacy service port (number or name) to the workload port that
    /// `portLevelMtls` and `ports` conditions match.
    pub fn workload_port(
        &mut self,
        r: &LegacyResource,
        path: &FieldPath,
        w: &Workload<'_>,
        number: Option<u32>,
        name: Option<&str>,
    ) -> Result<u32, String> {
        let Some(svc) = w.service else {
            return match (number, name) {
                (Some(n), _) => {
                    self.note(
                        r,
                        Severity::Info,
                        path.clone(),
                        format!("service port {n} of {} is assumed to equal the container port it forwards to", w.short),
                    );
                    Ok(n)
                }
                (None, Some(name)) => Err(format!(
                    "port {name:?} is given by name and Service {} was not given to the conversion, so its number is unknown",
                    w.short
                )),
                (None, None) => Err("a port needs a number or a name".into()),
            };
        };
        let port = svc
            .service
            .spec
            .ports
            .iter()
            .find(|p| match (number, name) {
                (Some(n), _) => i64::from(p.port) == i64::from(n),
                (None, Some(name)) => p.name.as_deref() == Some(name),
                (None, None) => false,
            });
        let Some(port) = port else {
            let which = number.map_or_else(
                || format!("{:?}", name.unwrap_or_default()),
                |n| n.to_string(),
            );
            return Err(format!(
                "Service {}/{} has no port {which}",
                svc.namespace, svc.name
            ));
        };
        match port.effective_target_port() {
            IntOrString::Int(t) => u32::try_from(t).map_err(|_| format!("target port {t} is not a port number")),
            IntOrString::String(s) => Err(format!(
                "service port {} forwards to the container port named {s:?}, whose number is only known from the pods",
                port.port
            )),
        }
    }

    /// Resolves the pending items: PeerAuthentications for the same namespace and
    /// selector are merged into the first one (workload mode plus port modes).
    fn finish(self) -> (Vec<ConvertedResource>, Vec<Diagnostic>) {
        let mut diags = self.diags;
        let mut peers: Vec<PeerAuthn> = Vec::new();
        let mut order: Vec<Result<ConvertedResource, usize>> = Vec::new();
        let mut merged_sources: Vec<Vec<LegacySource>> = Vec::new();
        for item in self.items {
            match item {
                Pending::Ready(c) => order.push(Ok(c)),
                Pending::Peer(p) => {
                    let same = peers
                        .iter()
                        .position(|q| q.namespace == p.namespace && q.selector == p.selector);
                    match same {
                        None => {
                            order.push(Err(peers.len()));
                            merged_sources.push(vec![p.source.clone()]);
                            peers.push(p);
                        }
                        Some(i) => {
                            merge_peer(&mut peers[i], &p, &mut diags);
                            merged_sources[i].push(p.source);
                        }
                    }
                }
            }
        }
        let resources = order
            .into_iter()
            .map(|o| match o {
                Ok(c) => c,
                Err(i) => ConvertedResource {
                    value: peer_value(&peers[i]),
                    sources: merged_sources[i].clone(),
                },
            })
            .collect();
        (resources, diags)
    }
}

fn merge_peer(into: &mut PeerAuthn, p: &PeerAuthn, diags: &mut Vec<Diagnostic>) {
    let scope = match &into.selector {
        None => format!("namespace {}", into.namespace),
        Some(sel) => format!("workloads {} in {}", show_selector(sel), into.namespace),
    };
    match (into.mode, p.mode) {
        (Some(a), Some(b)) if a != b => diags.push(p.source.diag(Diagnostic::warning(
            FieldPath::root(),
            format!(
                "conflicts with {} for {scope} (mode {b} vs {a}); the first one is kept",
                into.source.resource
            ),
        ))),
        (None, Some(b)) => into.mode = Some(b),
        _ => {}
    }
    for (port, mode) in &p.ports {
        match into.ports.get(port) {
            Some(existing) if existing != mode => diags.push(p.source.diag(Diagnostic::warning(
                FieldPath::root(),
                format!(
                    "conflicts with {} on port {port} of {scope}; the first one is kept",
                    into.source.resource
                ),
            ))),
            Some(_) => {}
            None => {
                into.ports.insert(*port, mode);
            }
        }
    }
}

pub(super) fn show_selector(sel: &BTreeMap<String, String>) -> String {
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn peer_value(p: &PeerAuthn) -> Value {
    let mut spec = Map::new();
    if let Some(sel) = &p.selector {
        spec.insert("selector".into(), json!({ "matchLabels": sel }));
    }
    if let Some(mode) = p.mode {
        spec.insert("mtls".into(), json!({ "mode": mode }));
    }
    if !p.ports.is_empty() {
        let ports: Map<String, Value> = p
            .ports
            .iter()
            .map(|(port, mode)| (port.to_string(), json!({ "mode": mode })))
            .collect();
        spec.insert("portLevelMtls".into(), Value::Object(ports));
    }
    object(
        "PeerAuthentication",
        &p.namespace,
        &p.name,
        None,
        Value::Object(spec),
    )
}

/// A `security.istio.io/v1` object.
pub(super) fn object(
    kind: &str,
    namespace: &str,
    name: &str,
    annotations: Option<Value>,
    spec: Value,
) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(namespace));
    if let Some(a) = annotations {
        metadata.insert("annotations".into(), a);
    }
    json!({ "apiVersion": SECURITY_API_VERSION, "kind": kind, "metadata": metadata, "spec": spec })
}

/// `(short name, namespace)` of a legacy service reference: `foo`, `foo.ns`,
/// `foo.ns.svc.cluster.local` (and the book's `foo.ns.cluster.local`).
pub(super) fn split_service(name: &str) -> (&str, Option<&str>) {
    let mut labels = name.split('.');
    let short = labels.next().unwrap_or_default();
    (short, labels.next().filter(|l| !l.is_empty()))
}
