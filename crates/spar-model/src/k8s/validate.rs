//! The API server's rules for the fields a mesh depends on. A manifest that breaks
//! them would be refused by `kubectl apply`; Spar reports it the same way instead of
//! building a registry from it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Container, Deployment, IntOrString, Pod, PodSpec, Service};
use crate::names::is_k8s_label_name;
use crate::{Diagnostic, FieldPath};

const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

/// Kubernetes' `IANA_SVC_NAME`: 1–15 lower-case letters, digits and `-`, at least one
/// letter, no `-` at either end and no `--`. Named ports (container and target ports) use it.
pub fn is_iana_svc_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.bytes().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn port_in_range(p: i32) -> bool {
    (1..=65535).contains(&p)
}

fn check_protocol(protocol: Option<&str>, path: FieldPath, out: &mut Vec<Diagnostic>) {
    if let Some(p) = protocol {
        if !PROTOCOLS.contains(&p) {
            out.push(Diagnostic::error(
                path,
                format!("unsupported value {p:?}: must be one of TCP, UDP, SCTP"),
            ));
        }
    }
}

/// `path` is where the object sits (usually the root); findings are under `spec`.
pub fn validate_service(svc: &Service, path: &FieldPath) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let spec_path = path.field("spec");
    let spec = &svc.spec;
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&type_) {
        out.push(Diagnostic::error(
            spec_path.field("type"),
            format!(
                "unsupported value {type_:?}: must be one of {}",
                SERVICE_TYPES.join(", ")
            ),
        ));
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if type_ == "ExternalName" && spec.external_name.as_deref().unwrap_or("").is_empty() {
        out.push(Diagnostic::error(
            spec_path.field("externalName"),
            "required when type is ExternalName",
        ));
    }
    if spec.ports.is_empty() && type_ != "ExternalName" && !headless {
        out.push(Diagnostic::error(
            spec_path.field("ports"),
            "at least one port is required (unless headless or ExternalName)",
        ));
    }
    let many = spec.ports.len() > 1;
    let mut names = BTreeSet::new();
    let mut port_protocols = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p = spec_path.field("ports").index(i);
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            None if many => out.push(Diagnostic::error(
                p.field("name"),
                "required when a service has more than one port",
            )),
            None => {}
            Some(name) => {
                if !is_k8s_label_name(name) {
                    out.push(Diagnostic::error(
                        p.field("name"),
                        format!("invalid port name {name:?}: must be a lower-case DNS label (a-z, 0-9, '-')"),
                    ));
                }
                if !names.insert(name) {
                    out.push(Diagnostic::error(
                        p.field("name"),
                        format!("duplicate port name {name:?}"),
                    ));
                }
            }
        }
        if !port_in_range(port.port) {
            out.push(Diagnostic::error(
                p.field("port"),
                format!("must be between 1 and 65535, inclusive (got {})", port.port),
            ));
        }
        check_protocol(port.protocol.as_deref(), p.field("protocol"), &mut out);
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !port_protocols.insert((port.port, protocol)) {
            out.push(Diagnostic::error(
                p,
                format!("duplicate port {}/{protocol}", port.port),
            ));
            continue;
        }
        match &port.target_port {
            None | Some(IntOrString::Int(0)) => {}
            Some(IntOrString::Int(t)) if !port_in_range(*t) => out.push(Diagnostic::error(
                p.field("targetPort"),
                format!("must be between 1 and 65535, inclusive (got {t})"),
            )),
            Some(IntOrString::String(s)) if !is_iana_svc_name(s) => out.push(Diagnostic::error(
                p.field("targetPort"),
                format!(
                    "invalid port name {s:?}: must be 1-15 lower-case letters, digits and '-', with at least one letter"
                ),
            )),
            Some(_) => {}
        }
        if let Some(np) = port.node_port.filter(|np| *np != 0) {
            if !port_in_range(np) {
                out.push(Diagnostic::error(
                    p.field("nodePort"),
                    format!("must be between 1 and 65535, inclusive (got {np})"),
                ));
            } else if type_ == "ClusterIP" {
                out.push(Diagnostic::error(
                    p.field("nodePort"),
                    "may not be used when type is ClusterIP",
                ));
            }
        }
    }
    out
}

/// Checks the pod template: a selector that matches its labels, containers and their ports.
pub fn validate_deployment(d: &Deployment, path: &FieldPath) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let spec_path = path.field("spec");
    let spec = &d.spec;
    if let Some(r) = spec.replicas.filter(|r| *r < 0) {
        out.push(Diagnostic::error(
            spec_path.field("replicas"),
            format!("must be greater than or equal to 0 (got {r})"),
        ));
    }
    if spec.selector.is_empty() {
        out.push(Diagnostic::error(
            spec_path.field("selector"),
            "required: a Deployment must select its pods",
        ));
    } else if !spec.selector.matches(&spec.template.metadata.labels) {
        out.push(Diagnostic::error(
            spec_path
                .field("template")
                .field("metadata")
                .field("labels"),
            format!(
                "`selector` does not match template labels ({})",
                show_labels(&spec.template.metadata.labels)
            ),
        ));
    }
    validate_pod_spec(
        &spec.template.spec,
        &spec_path.field("template").field("spec"),
        &mut out,
    );
    out
}

/// Checks a pod's containers and their ports.
pub fn validate_pod(pod: &Pod, path: &FieldPath) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    validate_pod_spec(&pod.spec, &path.field("spec"), &mut out);
    out
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "none".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn validate_pod_spec(spec: &PodSpec, path: &FieldPath, out: &mut Vec<Diagnostic>) {
    if spec.containers.is_empty() {
        out.push(Diagnostic::error(
            path.field("containers"),
            "at least one container is required",
        ));
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    let lists = [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
    ];
    for (field, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let p = path.field(field).index(i);
            if c.name.is_empty() {
                out.push(Diagnostic::error(p.field("name"), "required"));
            } else if !names.insert(c.name.as_str()) {
                out.push(Diagnostic::error(
                    p.field("name"),
                    format!("duplicate container name {:?}", c.name),
                ));
            }
            validate_container_ports(c, &p, &mut port_names, out);
        }
    }
}

fn validate_container_ports<'a>(
    c: &'a Container,
    path: &FieldPath,
    port_names: &mut BTreeSet<&'a str>,
    out: &mut Vec<Diagnostic>,
) {
    for (j, port) in c.ports.iter().enumerate() {
        let p = path.field("ports").index(j);
        if !port_in_range(port.container_port) {
            out.push(Diagnostic::error(
                p.field("containerPort"),
                format!(
                    "must be between 1 and 65535, inclusive (got {})",
                    port.container_port
                ),
            ));
        }
        if let Some(hp) = port.host_port.filter(|hp| *hp != 0 && !port_in_range(*hp)) {
            out.push(Diagnostic::error(
                p.field("hostPort"),
                format!("must be between 1 and 65535, inclusive (got {hp})"),
            ));
        }
        check_protocol(port.protocol.as_deref(), p.field("protocol"), out);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            if !is_iana_svc_name(name) {
                out.push(Diagnostic::error(
                    p.field("name"),
                    format!("invalid port name {name:?}: must be 1-15 lower-case letters, digits and '-', with at least one letter"),
                ));
            } else if !port_names.insert(name) {
                out.push(Diagnostic::error(
                    p.field("name"),
                    format!("duplicate port name {name:?} in the pod"),
                ));
            }
        }
    }
}
