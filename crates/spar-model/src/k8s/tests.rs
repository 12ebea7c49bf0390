use std::path::{Path, PathBuf};

use super::*;
use crate::yaml::{parse_documents, Notice};
use crate::{Diagnostic, FieldPath};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/istio-reference/istio-samples")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

fn one<T: serde::de::DeserializeOwned>(src: &str) -> (T, Vec<Notice>) {
    let docs = parse_documents(src).unwrap();
    let mut notices = Vec::new();
    let v = read_object(&docs[0].root, Some(&mut notices)).unwrap();
    (v, notices)
}

fn messages(diags: &[Diagnostic]) -> Vec<String> {
    diags.iter().map(|d| d.to_string()).collect()
}

#[test]
fn every_sample_workload_reads_cleanly_and_validates() {
    let mut files = Vec::new();
    yaml_files(&samples_dir(), &mut files);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for doc in parse_documents(&text).unwrap() {
            let kind = doc
                .root
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let api = doc
                .root
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or_default();
            let mut notices = Vec::new();
            let where_ = format!("{}:{}", file.display(), doc.root.mark.line);
            let diags = match (api, kind.as_str()) {
                ("v1", "Service") => {
                    let svc: Service = read_object(&doc.root, Some(&mut notices)).expect(&where_);
                    assert!(!svc.spec.ports.is_empty(), "{where_}");
                    validate_service(&svc, &FieldPath::root())
                }
                ("apps/v1", "Deployment") => {
                    let d: Deployment = read_object(&doc.root, Some(&mut notices)).expect(&where_);
                    assert!(!d.spec.template.spec.containers.is_empty(), "{where_}");
                    validate_deployment(&d, &FieldPath::root())
                }
                ("v1", "ServiceAccount") => {
                    let _: ServiceAccount =
                        read_object(&doc.root, Some(&mut notices)).expect(&where_);
                    Vec::new()
                }
                _ => continue,
            };
            assert!(notices.is_empty(), "{where_}: {notices:?}");
            assert!(diags.is_empty(), "{where_}: {:?}", messages(&diags));
            *counts.entry(kind).or_default() += 1;
        }
    }
    assert_eq!(counts.get("Service"), Some(&15), "{counts:?}");
    assert_eq!(counts.get("Deployment"), Some(&17), "{counts:?}");
    assert_eq!(counts.get("ServiceAccount"), Some(&7), "{counts:?}");
}

#[test]
fn bookinfo_details() {
    let text = std::fs::read_to_string(samples_dir().join("bookinfo/platform/kube/bookinfo.yaml"))
        .unwrap();
    let docs = parse_documents(&text).unwrap();
    let svc: Service = read_object(&docs[0].root, None).unwrap();
    assert_eq!(svc.spec.selector["app"], "details");
    assert_eq!(svc.spec.ports[0].port, 9080);
    assert_eq!(svc.spec.ports[0].name.as_deref(), Some("http"));
    assert_eq!(
        svc.spec.ports[0].effective_target_port(),
        IntOrString::Int(9080)
    );
    let d: Deployment = read_object(&docs[2].root, None).unwrap();
    assert_eq!(d.spec.replicas, Some(1));
    assert_eq!(d.spec.selector.match_labels["version"], "v1");
    assert_eq!(
        d.spec.template.spec.effective_service_account(),
        "bookinfo-details"
    );
    assert_eq!(
        d.spec.template.spec.containers[0].ports[0].container_port,
        9080
    );
    let reviews = docs
        .iter()
        .find(|d| {
            d.root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                == Some("reviews-v1")
        })
        .unwrap();
    let d: Deployment = read_object(&reviews.root, None).unwrap();
    let env = &d.spec.template.spec.containers[0].env[0];
    assert_eq!(
        (env.name.as_str(), env.value.as_deref()),
        ("LOG_DIR", Some("/tmp/logs"))
    );
}

#[test]
fn target_port_is_int_or_string_by_json_type() {
    let (svc, _): (Service, _) = one(
        "spec:\n  ports:\n  - {name: a, port: 80, targetPort: 8080}\n  - {name: b, port: 81, targetPort: http}\n  - {name: c, port: 82, targetPort: '8082'}\n",
    );
    let tp: Vec<_> = svc
        .spec
        .ports
        .iter()
        .map(|p| p.target_port.clone().unwrap())
        .collect();
    assert_eq!(
        tp,
        [
            IntOrString::Int(8080),
            IntOrString::from("http"),
            IntOrString::from("8082")
        ]
    );
    // A quoted number is a string, and not a valid port name: kubectl says the same.
    let diags = validate_service(&svc, &FieldPath::root());
    assert_eq!(diags.len(), 1, "{:?}", messages(&diags));
    assert_eq!(
        diags[0].path.as_ref().unwrap().to_string(),
        "spec.ports[2].targetPort"
    );
    let back = serde_json::to_value(&svc).unwrap();
    assert_eq!(back["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(back["spec"]["ports"][1]["targetPort"], "http");
}

#[test]
fn unknown_fields_are_reported_from_the_root() {
    let (_, notices): (Service, _) =
        one("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  prots: []\n");
    assert_eq!(notices.len(), 1);
    assert!(
        matches!(&notices[0], Notice::UnknownField { path, .. } if path.to_string() == "spec.prots")
    );
}

#[test]
fn service_validation_rules() {
    let cases: &[(&str, Option<&str>)] = &[
        ("ports: [{port: 80}]", None),
        (
            "ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]",
            None,
        ),
        ("ports: [{port: 80, protocol: UDP}, ]", None),
        ("ports: [{port: 0}]", Some("spec.ports[0].port")),
        ("ports: [{port: 65536}]", Some("spec.ports[0].port")),
        (
            "ports: [{port: 80, targetPort: 70000}]",
            Some("spec.ports[0].targetPort"),
        ),
        ("ports: [{port: 80, targetPort: http-web}]", None),
        (
            "ports: [{port: 80, targetPort: Http}]",
            Some("spec.ports[0].targetPort"),
        ),
        (
            "ports: [{port: 80, targetPort: 'a-very-long-port-name'}]",
            Some("spec.ports[0].targetPort"),
        ),
        (
            "ports: [{port: 80, targetPort: 'web--x'}]",
            Some("spec.ports[0].targetPort"),
        ),
        ("ports: [{name: a, port: 80}, {name: b, port: 81}]", None),
        (
            "ports: [{name: a, port: 80}, {port: 81}]",
            Some("spec.ports[1].name"),
        ),
        (
            "ports: [{name: a, port: 80}, {name: a, port: 81}]",
            Some("spec.ports[1].name"),
        ),
        ("ports: [{name: A, port: 80}]", Some("spec.ports[0].name")),
        (
            "ports: [{name: a, port: 80}, {name: b, port: 80}]",
            Some("spec.ports[1]"),
        ),
        (
            "ports: [{name: a, port: 80}, {name: b, port: 80, protocol: UDP}]",
            None,
        ),
        (
            "ports: [{port: 80, protocol: tcp}]",
            Some("spec.ports[0].protocol"),
        ),
        (
            "ports: [{port: 80, protocol: HTTP}]",
            Some("spec.ports[0].protocol"),
        ),
        ("ports: [{port: 80, protocol: SCTP}]", None),
        ("ports: []", Some("spec.ports")),
        ("{clusterIP: None}", None),
        ("{type: ExternalName, externalName: example.com}", None),
        ("{type: ExternalName}", Some("spec.externalName")),
        ("{type: Magic, ports: [{port: 80}]}", Some("spec.type")),
        (
            "{type: NodePort, ports: [{port: 80, nodePort: 30080}]}",
            None,
        ),
        (
            "{ports: [{port: 80, nodePort: 30080}]}",
            Some("spec.ports[0].nodePort"),
        ),
    ];
    for (spec, want) in cases {
        let body = if spec.starts_with('{') {
            spec.to_string()
        } else {
            format!("{{{spec}}}")
        };
        let (svc, notices): (Service, _) = one(&format!("spec: {body}\n"));
        assert!(notices.is_empty(), "{spec}: {notices:?}");
        let diags = validate_service(&svc, &FieldPath::root());
        match want {
            None => assert!(diags.is_empty(), "{spec}: {:?}", messages(&diags)),
            Some(path) => {
                assert_eq!(diags.len(), 1, "{spec}: {:?}", messages(&diags));
                assert_eq!(
                    diags[0].path.as_ref().map(ToString::to_string).as_deref(),
                    Some(*path),
                    "{spec}"
                );
                assert!(diags[0].is_error());
            }
        }
    }
}

#[test]
fn deployment_validation_rules() {
    let base = |selector: &str, labels: &str, containers: &str| {
        format!("spec:\n  selector: {selector}\n  template:\n    metadata: {{labels: {labels}}}\n    spec: {{containers: {containers}}}\n")
    };
    let ok_c = "[{name: app, ports: [{containerPort: 8080, name: http}]}]";
    let cases: Vec<(String, Option<&str>)> = vec![
        (
            base("{matchLabels: {app: a}}", "{app: a, version: v1}", ok_c),
            None,
        ),
        (
            base("{matchLabels: {app: a}}", "{app: b}", ok_c),
            Some("spec.template.metadata.labels"),
        ),
        (base("{}", "{app: a}", ok_c), Some("spec.selector")),
        (
            base(
                "{matchExpressions: [{key: app, operator: In, values: [a, b]}]}",
                "{app: b}",
                ok_c,
            ),
            None,
        ),
        (
            base("{matchLabels: {app: a}}", "{app: a}", "[]"),
            Some("spec.template.spec.containers"),
        ),
        (
            base(
                "{matchLabels: {app: a}}",
                "{app: a}",
                "[{name: app, ports: [{containerPort: 0}]}]",
            ),
            Some("spec.template.spec.containers[0].ports[0].containerPort"),
        ),
        (
            base(
                "{matchLabels: {app: a}}",
                "{app: a}",
                "[{name: app, ports: [{containerPort: 70000}]}]",
            ),
            Some("spec.template.spec.containers[0].ports[0].containerPort"),
        ),
        (
            base(
                "{matchLabels: {app: a}}",
                "{app: a}",
                "[{name: app}, {name: app}]",
            ),
            Some("spec.template.spec.containers[1].name"),
        ),
        (
            base(
                "{matchLabels: {app: a}}",
                "{app: a}",
                "[{name: app, ports: [{containerPort: 80, name: HTTP}]}]",
            ),
            Some("spec.template.spec.containers[0].ports[0].name"),
        ),
    ];
    for (src, want) in &cases {
        let (d, notices): (Deployment, _) = one(src);
        assert!(notices.is_empty(), "{src}: {notices:?}");
        let diags = validate_deployment(&d, &FieldPath::root());
        match want {
            None => assert!(diags.is_empty(), "{src}: {:?}", messages(&diags)),
            Some(path) => {
                assert_eq!(diags.len(), 1, "{src}: {:?}", messages(&diags));
                assert_eq!(
                    diags[0].path.as_ref().map(ToString::to_string).as_deref(),
                    Some(*path),
                    "{src}"
                );
            }
        }
    }
}

#[test]
fn endpoints_and_slices() {
    let (ep, n): (Endpoints, _) = one(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: reviews}\nsubsets:\n- addresses:\n  - ip: 10.0.0.1\n    nodeName: n1\n    targetRef: {kind: Pod, name: reviews-v1-abc, namespace: default}\n  notReadyAddresses:\n  - ip: 10.0.0.2\n  ports:\n  - {name: http, port: 9080, protocol: TCP, appProtocol: http}\n",
    );
    assert!(n.is_empty(), "{n:?}");
    let s = &ep.subsets[0];
    assert_eq!(s.addresses[0].ip, "10.0.0.1");
    assert_eq!(
        s.addresses[0].target_ref.as_ref().unwrap().name.as_deref(),
        Some("reviews-v1-abc")
    );
    assert_eq!(s.not_ready_addresses[0].ip, "10.0.0.2");
    assert_eq!(s.ports[0].port, Some(9080));

    let (slice, n): (EndpointSlice, _) = one(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: reviews-abc\n  labels: {kubernetes.io/service-name: reviews}\naddressType: IPv6\nendpoints:\n- addresses: [2001:db8::1]\n  conditions: {ready: true, serving: true, terminating: false}\n  nodeName: n1\n  zone: us-east-1a\n  targetRef: {kind: Pod, name: p}\n- addresses: [2001:db8::2]\nports:\n- {name: http, port: 9080, protocol: TCP}\n",
    );
    assert!(n.is_empty(), "{n:?}");
    assert_eq!(slice.address_type, "IPv6");
    assert_eq!(slice.endpoints[0].addresses, ["2001:db8::1"]);
    assert_eq!(
        slice.endpoints[0].conditions.as_ref().unwrap().ready,
        Some(true)
    );
    assert_eq!(slice.endpoints[0].zone.as_deref(), Some("us-east-1a"));
    assert!(slice.endpoints[1].conditions.is_none());
}

#[test]
fn pods_namespaces_and_accounts() {
    let (pod, n): (Pod, _) = one(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: a}}\nspec:\n  serviceAccount: legacy-sa\n  containers:\n  - name: app\n    image: x\n    ports: [{containerPort: 80}]\n    readinessProbe: {httpGet: {path: /ready, port: 80}}\nstatus:\n  phase: Running\n  podIP: 10.1.1.1\n  podIPs: [{ip: 10.1.1.1}]\n  conditions: [{type: Ready, status: True}]\n",
    );
    assert!(n.is_empty(), "{n:?}");
    assert_eq!(pod.spec.effective_service_account(), "legacy-sa");
    let status = pod.status.unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("10.1.1.1"));
    assert_eq!(status.conditions[0].status, "True");
    assert!(validate_pod(
        &Pod {
            spec: pod.spec.clone(),
            status: None
        },
        &FieldPath::root()
    )
    .is_empty());
    assert_eq!(PodSpec::default().effective_service_account(), "default");

    let (_, n): (Namespace, _) =
        one("apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {istio-injection: enabled}}\n");
    assert!(n.is_empty());
    let (sa, n): (ServiceAccount, _) = one("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountServiceAccountToken: false\n");
    assert!(n.is_empty());
    assert_eq!(sa.automount_service_account_token, Some(false));
}

#[test]
fn iana_service_names() {
    for ok in ["http", "http-web", "h2c", "a1", "grpc-web-15char"] {
        assert!(is_iana_svc_name(ok), "{ok}");
    }
    for bad in [
        "",
        "8080",
        "-http",
        "http-",
        "a--b",
        "HTTP",
        "http_web",
        "sixteen-chars-xx",
    ] {
        assert!(!is_iana_svc_name(bad), "{bad}");
    }
}
