//! Test support for the security, telemetry and extension rules, and their run over
//! Istio's own validation test data (`testdata/istio-reference/istio-validation`).

use serde::de::DeserializeOwned;

use super::super::Ctx;
use crate::diag::{Diagnostic, Severity};
use crate::istio::types::{
    AuthorizationPolicy, PeerAuthentication, RequestAuthentication, Telemetry, WasmPlugin,
};
use crate::yaml::{from_node_at, parse_documents, Node};
use crate::FieldPath;

pub(crate) const CTX: Ctx<'static> = Ctx {
    namespace: "default",
    name: "test",
};

/// Reads a `spec` written as a YAML snippet.
pub(crate) fn spec<T: DeserializeOwned>(yaml: &str) -> T {
    let docs = parse_documents(yaml).unwrap();
    match docs.first() {
        Some(doc) => node_spec(&doc.root).unwrap(),
        None => node_spec(&Node::null(Default::default())).unwrap(),
    }
}

fn node_spec<T: DeserializeOwned>(node: &Node) -> Result<T, String> {
    from_node_at::<T>(node, FieldPath::root().field("spec"), None).map_err(|e| e.to_string())
}

/// `(severity, path)` of each diagnostic, sorted, for exact comparison in tables.
pub(crate) fn found(diags: &[Diagnostic]) -> Vec<(Severity, String)> {
    let mut v: Vec<_> = diags
        .iter()
        .map(|d| {
            (
                d.severity,
                d.path.as_ref().map(ToString::to_string).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The expected `found` for a table row: error paths, then warning paths.
pub(crate) fn expect(errors: &[&str], warnings: &[&str]) -> Vec<(Severity, String)> {
    let mut v: Vec<_> = errors
        .iter()
        .map(|p| (Severity::Error, p.to_string()))
        .chain(warnings.iter().map(|p| (Severity::Warning, p.to_string())))
        .collect();
    v.sort();
    v
}

/// One document of a reference file: its name, its `_err` text (invalid files) and its spec.
struct RefDoc {
    name: String,
    err: Option<String>,
    spec: Node,
}

fn reference_docs(file: &str) -> Vec<RefDoc> {
    let path = format!(
        "{}/../../testdata/istio-reference/istio-validation/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_documents(&text)
        .unwrap()
        .into_iter()
        .map(|doc| {
            let root = doc.root;
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str)
                .unwrap_or("?")
                .to_string();
            let err = root.get("_err").and_then(Node::as_str).map(str::to_string);
            let spec = root
                .get("spec")
                .cloned()
                .unwrap_or_else(|| Node::null(Default::default()));
            RefDoc { name, err, spec }
        })
        .collect()
}

/// Reads a spec node as `T` and runs the rules; `Err` when the spec cannot be read.
type Rules = Box<dyn Fn(&Node) -> Result<Vec<Diagnostic>, String>>;

fn rules_of<T: DeserializeOwned + 'static>(check: fn(&T, &Ctx) -> Vec<Diagnostic>) -> Rules {
    Box::new(move |node| node_spec::<T>(node).map(|spec| check(&spec, &CTX)))
}

fn kinds() -> Vec<(&'static str, Rules)> {
    vec![
        (
            "authz",
            rules_of::<AuthorizationPolicy>(super::super::check_authorization_policy),
        ),
        (
            "reqauth",
            rules_of::<RequestAuthentication>(super::super::check_request_authentication),
        ),
        (
            "peerauth",
            rules_of::<PeerAuthentication>(super::super::check_peer_authentication),
        ),
        (
            "telemetry",
            rules_of::<Telemetry>(super::super::check_telemetry),
        ),
        ("wasm", rules_of::<WasmPlugin>(super::super::check_wasm)),
    ]
}

#[test]
fn reference_valid_documents_have_no_errors() {
    for (kind, rules) in kinds() {
        let file = format!("{kind}-valid.yaml");
        let docs = reference_docs(&file);
        assert!(!docs.is_empty(), "{file} has no documents");
        for doc in docs {
            let diags = rules(&doc.spec).unwrap_or_else(|e| panic!("{file} {}: {e}", doc.name));
            for d in diags.iter().filter(|d| !d.is_error()) {
                println!("{file} {}: {d}", doc.name);
            }
            let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
            assert!(errors.is_empty(), "{file} {}: {errors:#?}", doc.name);
        }
    }
}

/// `_err` texts of invalid documents that Istio's webhook rules (ours) reject, not only
/// the CRD schema. Every other case is the schema layer's; they are printed, not asserted.
const OURS: &[&str] = &[
    "Duplicate value",
    "value must be set when operation is UPSERT",
    "value must not be set when operation is REMOVE",
];

#[test]
fn reference_invalid_documents() {
    for (kind, rules) in kinds() {
        let file = format!("{kind}-invalid.yaml");
        for doc in reference_docs(&file) {
            let err = doc.err.clone().unwrap_or_default();
            let verdict = match rules(&doc.spec) {
                Ok(diags) => {
                    let errors: Vec<_> = diags
                        .iter()
                        .filter(|d| d.is_error())
                        .map(ToString::to_string)
                        .collect();
                    if errors.is_empty() {
                        "accepted by webhook rules".to_string()
                    } else {
                        format!("rejected: {}", errors.join(" | "))
                    }
                }
                Err(e) => format!("not readable as a spec (schema layer): {e}"),
            };
            println!("{file} {:<40} _err={err:?}: {verdict}", doc.name);
            if OURS.iter().any(|o| err.contains(o)) {
                assert!(
                    verdict.starts_with("rejected"),
                    "{file} {}: expected our rules to reject it",
                    doc.name
                );
            }
        }
    }
}
