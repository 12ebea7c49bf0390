use std::path::{Path, PathBuf};

use super::*;
use crate::yaml::{from_node, parse_documents, Node, Notice};
use crate::FieldPath;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/istio-reference")
        .join(rel)
}

/// `(file, kind, spec)` of every document in `files` that is one of `kinds` (all if empty).
fn specs(files: &[PathBuf], kinds: &[&str]) -> Vec<(String, String, Node)> {
    let mut out = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display())) {
            let kind = doc
                .root
                .get("kind")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_string();
            if !kinds.is_empty() && !kinds.contains(&kind.as_str()) {
                continue;
            }
            let name = doc
                .root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str);
            let label = format!("{} ({})", file.display(), name.unwrap_or("?"));
            if let Some(spec) = doc.root.get("spec") {
                out.push((label, kind, spec.clone()));
            }
        }
    }
    out
}

fn files_matching(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata(dir))
        .expect("testdata directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Fields the validation cases use that the bundled CRDs (an older Istio) do not define yet:
/// Istio's test data runs against its newest API; these are reported as unknown fields.
const NEWER_THAN_CRDS: &[&str] = &[];

fn reads_cleanly(docs: &[(String, String, Node)]) {
    assert!(!docs.is_empty());
    let mut failures = Vec::new();
    for (label, kind, spec) in docs {
        let mut notices = Vec::new();
        match IstioSpec::from_node(
            kind,
            spec,
            FieldPath::root().field("spec"),
            Some(&mut notices),
        ) {
            None => failures.push(format!("{label}: {kind} is not an Istio kind")),
            Some(Err(e)) => failures.push(format!("{label}: {e}")),
            Some(Ok(parsed)) => {
                assert_eq!(parsed.kind(), kind);
                let unknown: Vec<_> = notices
                    .iter()
                    .filter_map(|n| match n {
                        Notice::UnknownField { path, .. } => Some(path.to_string())
                            .filter(|p| !NEWER_THAN_CRDS.contains(&p.as_str())),
                        Notice::DuplicateKey { .. } => None,
                    })
                    .collect();
                if !unknown.is_empty() {
                    failures.push(format!("{label}: unknown fields {unknown:?}"));
                }
                let json = serde_json::to_value(&parsed).expect("serialize");
                let original: serde_json::Value = from_node(spec, None).expect("spec as JSON");
                if let Err(diff) = same_json(&original, &json, "spec") {
                    failures.push(format!("{label}: round trip: {diff}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Compares what was read with what was written back, allowing for the ways Istio YAML may
/// differ from canonical JSON: quoted numbers, `null`/empty collections, number spellings.
fn same_json(orig: &serde_json::Value, back: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value as V;
    let empty = |v: &V| match v {
        V::Null => true,
        V::Array(a) => a.is_empty(),
        V::Object(o) => o.is_empty(),
        _ => false,
    };
    match (orig, back) {
        (V::Object(a), V::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => same_json(va, vb, &format!("{at}.{k}"))?,
                    None if empty(va)
                        || NEWER_THAN_CRDS.contains(&format!("{at}.{k}").as_str()) => {}
                    None => return Err(format!("{at}.{k} was dropped")),
                }
            }
            match b.keys().find(|k| !a.contains_key(*k)) {
                Some(k) => Err(format!("{at}.{k} appeared")),
                None => Ok(()),
            }
        }
        (V::Array(a), V::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(i, (x, y))| same_json(x, y, &format!("{at}[{i}]"))),
        (V::Number(a), V::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        (V::String(a), V::Number(b)) if a.parse::<f64>().ok() == b.as_f64() => Ok(()),
        (V::Number(a), V::String(b)) if a.to_string() == *b => Ok(()),
        (V::Bool(a), V::String(b)) if a.to_string() == *b => Ok(()),
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{at}: {a} became {b}")),
    }
}

#[test]
fn bookinfo_networking_samples_read_cleanly() {
    let files = files_matching("istio-samples/bookinfo/networking", ".yaml");
    let docs = specs(
        &files,
        &[
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "ServiceEntry",
            "Sidecar",
        ],
    );
    reads_cleanly(&docs);
}

#[test]
fn valid_validation_cases_read_cleanly() {
    let files = files_matching("istio-validation", "-valid.yaml");
    let docs = specs(&files, &[]);
    reads_cleanly(&docs);
}

#[test]
fn every_served_version_is_accepted() {
    let vs =
        lookup("networking.istio.io/v1alpha3", "VirtualService").expect("v1alpha3 VirtualService");
    assert_eq!(vs.versions, ["v1", "v1beta1", "v1alpha3"]);
    assert_eq!(vs.preferred_api_version(), "networking.istio.io/v1");
    assert!(lookup("networking.istio.io/v1beta1", "VirtualService").is_some());
    assert!(lookup("networking.istio.io/v2", "VirtualService").is_none());
    assert!(lookup("security.istio.io/v1", "VirtualService").is_none());
    assert!(lookup("telemetry.istio.io/v1", "Telemetry").is_some());
    assert!(lookup("telemetry.istio.io/v1alpha1", "Telemetry").is_some());
    assert_eq!(KINDS.len(), 15);
}

#[test]
fn enums_and_aliases_keep_istio_spelling() {
    let docs = parse_documents(
        "jwtRules:\n- issuer: a\n  jwks_uri: https://a/jwks\n- issuer: b\n  jwksUri: https://b/jwks\n",
    )
    .expect("yaml");
    let ra: RequestAuthentication = from_node(&docs[0].root, None).expect("reads");
    assert_eq!(
        ra.jwt_rules[0].jwks_uri_snake.as_deref(),
        Some("https://a/jwks")
    );
    assert_eq!(ra.jwt_rules[1].jwks_uri.as_deref(), Some("https://b/jwks"));
    let back = serde_json::to_value(&ra).expect("serialize");
    assert_eq!(back["jwtRules"][0]["jwks_uri"], "https://a/jwks");
    assert_eq!(back["jwtRules"][1]["jwksUri"], "https://b/jwks");

    let docs = parse_documents("host: r\ntrafficPolicy:\n  loadBalancer: {simple: LEAST_REQUEST}\n  tls: {mode: ISTIO_MUTUAL}\n")
        .expect("yaml");
    let dr: DestinationRule = from_node(&docs[0].root, None).expect("reads");
    let tp = dr.traffic_policy.expect("trafficPolicy");
    assert_eq!(
        tp.load_balancer.and_then(|lb| lb.simple),
        Some(SimpleLB::LeastRequest)
    );
    assert_eq!(
        tp.tls.and_then(|t| t.mode).map(ClientTLSMode::as_str),
        Some("ISTIO_MUTUAL")
    );

    let docs = parse_documents("mtls: {mode: BLAH}\n").expect("yaml");
    assert!(from_node::<PeerAuthentication>(&docs[0].root, None).is_err());
}

#[test]
fn int_or_string_reads_both() {
    let docs = parse_documents("[80, \"80\", http]").expect("yaml");
    let v: Vec<IntOrString> = from_node(&docs[0].root, None).expect("reads");
    assert_eq!(
        v,
        [
            IntOrString::Int(80),
            IntOrString::String("80".into()),
            IntOrString::String("http".into())
        ]
    );
    assert_eq!(
        serde_json::to_string(&v).expect("json"),
        r#"[80,"80","http"]"#
    );
}
