use std::path::{Path, PathBuf};

use super::testing::{errors, CTX};
use super::*;
use crate::istio::types;
use crate::validate::{self, Ctx};
use crate::yaml::{from_node_at, parse_documents, Node};

#[test]
fn hosts_in_istio_flavour() {
    assert!(wildcard_domain("reviews").is_ok());
    assert!(wildcard_domain("*.example.com").is_ok());
    assert!(wildcard_domain("10.0.0.300").is_err(), "all-digit TLD");
    assert!(fqdn("example.com.").is_ok());
    assert!(fqdn("123").is_err());
    assert!(
        is_partial_wildcard("*foo.com")
            && !is_partial_wildcard("*.foo.com")
            && !is_partial_wildcard("*")
    );

    assert!(namespaced_host("ns/foo.example.com", true).is_empty());
    assert!(namespaced_host("*/*", true).is_empty());
    assert!(namespaced_host("foo.example.com", true).is_empty());
    assert!(
        namespaced_host("1.2.3.4", true).is_empty(),
        "gateways take IPs"
    );
    assert!(
        !namespaced_host("ns/reviews", true).is_empty(),
        "short names are refused"
    );
    assert!(
        !namespaced_host("ns/*foo.com", true).is_empty(),
        "partial wildcard"
    );
    assert!(
        !namespaced_host("~/*", true).is_empty(),
        "~ is for sidecars"
    );
    assert!(namespaced_host("~/*", false).is_empty());
    assert!(namespaced_host("./*", false).is_empty());
    assert!(
        !namespaced_host("foo.com", false).is_empty(),
        "sidecar needs ns/"
    );
    assert!(!namespaced_host("1.2.3.4", false).is_empty());

    assert!(hosts_overlap("*.foo.com", "a.foo.com") && hosts_overlap("*.com", "*.foo.com"));
    assert!(!hosts_overlap("*.foo.com", "foo.com") && !hosts_overlap("a.com", "b.com"));
    assert!(host_subset_of("a.foo.com", "*.foo.com") && host_subset_of("*.a.foo.com", "*.foo.com"));
    assert!(!host_subset_of("*.foo.com", "a.foo.com") && !host_subset_of("*.com", "*.foo.com"));
}

#[test]
fn export_to_rules() {
    let path = FieldPath::root().field("spec").field("exportTo");
    let run = |list: &[&str], se: bool| {
        let mut out = Vec::new();
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        check_export_to(&mut out, &path, "ns1", &list, se);
        errors(&out)
    };
    assert!(run(&[".", "ns2"], false).is_empty());
    assert!(run(&["~"], true).is_empty());
    assert!(!run(&["~"], false).is_empty());
    assert!(!run(&["~", "ns2"], true).is_empty());
    assert!(!run(&["*", "."], false).is_empty());
    assert_eq!(run(&[".", "ns1"], false), vec!["spec.exportTo[1]: duplicate exportTo entry: . already means the current namespace \"ns1\"".to_string()]);
}

#[test]
fn durations_regexes_header_values() {
    let mut out = Vec::new();
    let p = FieldPath::root().field("d");
    check_duration_ms(&mut out, p.clone(), Some(&"1.5s".to_string()));
    check_duration_ms(&mut out, p.clone(), Some(&"2m".to_string()));
    assert!(out.is_empty());
    check_duration_ms(&mut out, p, Some(&"1500us".to_string()));
    assert_eq!(out.len(), 1);

    assert!(check_re2("^/api/v[0-9]+").is_ok());
    assert!(check_re2("(a)\\1").is_err());
    assert!(check_re2("a(?!b)").is_err());
    assert!(check_re2(&"a".repeat(1025)).is_err());
    // RE2 syntax the regex crate lacks or is laxer about.
    assert!(check_re2("\\Qa.b(c\\E[0-9]+").is_ok());
    assert!(check_re2("\\Q(unterminated").is_ok());
    assert!(check_re2("x{2,1000}").is_ok() && check_re2("[{]{3}").is_ok());
    assert!(check_re2("x{2,1001}").is_err() && check_re2("x{5000}").is_err());
    assert!(check_re2("\\{5000}").is_ok());

    for ok in [
        "",
        "plain",
        "100%%",
        "%HOSTNAME%",
        "a %REQ(x-foo)% b",
        "%START_TIME(%s)%",
        "%X([\"a\", \"b\"])%",
        "tab\there",
    ] {
        assert!(check_header_value(ok).is_ok(), "{ok}");
    }
    for bad in [
        "abc%123",
        "%START_TIME%%",
        "%X([\"a\"%",
        "%X(a%",
        "line\nbreak",
    ] {
        assert!(check_header_value(bad).is_err(), "{bad}");
    }
}

#[test]
fn protocols_and_ports() {
    assert_eq!(Protocol::parse("grpc-web"), Some(Protocol::GrpcWeb));
    assert_eq!(Protocol::parse("Http"), Some(Protocol::Http));
    assert!(Protocol::parse("QUIC").is_none());
    assert!(Protocol::Https.is_tls() && Protocol::Https.is_tcp() && !Protocol::Https.is_http());
    assert!(port_in_range(1) && port_in_range(65535) && !port_in_range(0) && !port_in_range(65536));
    assert!(unix_path("/var/run/x.sock").is_ok() && unix_path("@abstract").is_ok());
    assert!(
        unix_path("relative").is_err() && unix_path("/dir/").is_err() && unix_path("").is_err()
    );
}

// ---------------------------------------------------------------------------------
// Istio's own valid inputs must pass every rule here without an error.

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/istio-reference")
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
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(node: &Node) -> T {
    from_node_at(node, FieldPath::root().field("spec"), None).unwrap()
}

/// Runs the rules of this module for a networking kind; `None` for other kinds.
fn check_document(kind: &str, spec: &Node, ctx: &Ctx) -> Option<Vec<crate::Diagnostic>> {
    Some(match kind {
        "VirtualService" => {
            validate::check_virtual_service(&typed::<types::VirtualService>(spec), ctx)
        }
        "DestinationRule" => {
            validate::check_destination_rule(&typed::<types::DestinationRule>(spec), ctx)
        }
        "Gateway" => validate::check_gateway(&typed::<types::Gateway>(spec), ctx),
        "ServiceEntry" => validate::check_service_entry(&typed::<types::ServiceEntry>(spec), ctx),
        "Sidecar" => validate::check_sidecar(&typed::<types::Sidecar>(spec), ctx),
        "WorkloadEntry" => {
            validate::check_workload_entry(&typed::<types::WorkloadEntry>(spec), ctx)
        }
        "WorkloadGroup" => {
            validate::check_workload_group(&typed::<types::WorkloadGroup>(spec), ctx)
        }
        "EnvoyFilter" => validate::check_envoy_filter(&typed::<types::EnvoyFilter>(spec), ctx),
        "ProxyConfig" => validate::check_proxy_config(&typed::<types::ProxyConfig>(spec), ctx),
        _ => return None,
    })
}

#[test]
fn istio_valid_inputs_have_no_errors() {
    let base = reference_dir();
    let mut files: Vec<PathBuf> = [
        "destinationrule",
        "serviceentry",
        "workloadentry",
        "workloadgroup",
        "envoyfilter",
        "proxyconfig",
    ]
    .iter()
    .map(|k| base.join(format!("istio-validation/{k}-valid.yaml")))
    .collect();
    yaml_files(&base.join("istio-samples"), &mut files);

    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for doc in parse_documents(&text).unwrap() {
            let root = &doc.root;
            let api = root.get("apiVersion").and_then(Node::as_str).unwrap_or("");
            if !api.starts_with("networking.istio.io/") {
                continue;
            }
            let kind = root.get("kind").and_then(Node::as_str).unwrap_or("");
            let meta = root.get("metadata");
            let name = meta
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str)
                .unwrap_or("");
            let namespace = meta
                .and_then(|m| m.get("namespace"))
                .and_then(Node::as_str)
                .unwrap_or(CTX.namespace);
            let ctx = Ctx { namespace, name };
            let empty = Node::null(doc.root.mark);
            let spec = root.get("spec").unwrap_or(&empty);
            let Some(diags) = check_document(kind, spec, &ctx) else {
                continue;
            };
            checked += 1;
            let errs = errors(&diags);
            if !errs.is_empty() {
                failures.push(format!("{} {kind} {name}: {errs:#?}", file.display()));
            }
        }
    }
    assert!(checked >= 60, "only {checked} documents checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
