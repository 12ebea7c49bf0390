//! Istio's own validation cases (`testdata/istio-reference/istio-validation`) against the
//! schema layer. Many invalid cases are for Istio's webhook, which another layer checks;
//! those are listed, not failed. A case the schema rejects must say what Istio says.

use std::path::{Path, PathBuf};

use super::{missing_spec, validate_spec};
use crate::yaml::{parse_documents, Node};
use crate::{Diagnostic, FieldPath};

struct Case {
    label: String,
    kind: String,
    err: Option<String>,
    diags: Vec<Diagnostic>,
}

fn cases(suffix: &str) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/istio-reference/istio-validation");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("istio-validation testdata")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {suffix} files in {}", dir.display());
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read testdata");
        let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs {
            let root = &doc.root;
            let kind = root
                .get("kind")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_string();
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str)
                .unwrap_or("?");
            let base = FieldPath::root().field("spec");
            let diags = match root.get("spec") {
                Some(spec) => validate_spec(&kind, spec, &base),
                None => missing_spec(&kind, &base, root).into_iter().collect(),
            };
            out.push(Case {
                label: format!(
                    "{}: {kind} {name}",
                    file.file_name()
                        .map(|f| f.to_string_lossy())
                        .unwrap_or_default()
                ),
                err: root.get("_err").and_then(Node::as_str).map(str::to_string),
                kind,
                diags,
            });
        }
    }
    out
}

fn rendered(d: &Diagnostic) -> String {
    match &d.path {
        Some(p) => format!("{p}: {}", d.message),
        None => d.message.clone(),
    }
}

#[test]
fn valid_cases_pass_the_schema() {
    let failures: Vec<String> = cases("-valid.yaml")
        .into_iter()
        .filter(|c| !c.diags.is_empty())
        .map(|c| {
            format!(
                "{} ({}): {:?}",
                c.label,
                c.kind,
                c.diags.iter().map(rendered).collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "valid cases rejected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn invalid_cases_rejected_by_the_schema_say_why() {
    let all = cases("-invalid.yaml");
    let mut wrong = Vec::new();
    let mut not_caught = Vec::new();
    let mut caught = 0;
    for case in &all {
        let want = case
            .err
            .as_deref()
            .expect("every invalid case has an _err")
            .to_lowercase();
        if case.diags.is_empty() {
            not_caught.push(format!("{}: {want}", case.label));
        } else if case
            .diags
            .iter()
            .any(|d| rendered(d).to_lowercase().contains(&want))
        {
            caught += 1;
        } else {
            let got: Vec<String> = case.diags.iter().map(rendered).collect();
            wrong.push(format!("{}: want {want:?}, got {got:?}", case.label));
        }
    }
    println!(
        "schema layer rejects {caught} of {} invalid cases; left to the webhook layer:",
        all.len()
    );
    for line in &not_caught {
        println!("  {line}");
    }
    assert!(
        wrong.is_empty(),
        "rejected with the wrong message:\n{}",
        wrong.join("\n")
    );
}
