//! Istio's own inputs: every valid document is accepted, every invalid one is rejected
//! for the reason Istio gives (`_err`), and the sample configs load cleanly.

// A failed read of test data should fail the test where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use spar_model::{ConfigSet, Diagnostic, LoadOptions};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {suffix} files in {}", dir.display());
    out
}

/// Splits a multi-document file into documents, keeping each document's text.
fn documents(text: &str) -> Vec<String> {
    text.split("\n---")
        .map(|d| d.trim_start_matches('-').to_string())
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .collect()
}

fn load(name: &str, text: &str) -> ConfigSet {
    ConfigSet::load([(name, text)], &LoadOptions::default())
}

fn errors(set: &ConfigSet) -> Vec<&Diagnostic> {
    set.diagnostics().iter().filter(|d| d.is_error()).collect()
}

#[test]
fn every_valid_document_is_accepted() {
    let mut checked = 0;
    for file in files(&testdata("istio-reference/istio-validation"), "-valid.yaml") {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in documents(&text) {
            let set = load(&file.display().to_string(), &doc);
            assert!(
                errors(&set).is_empty(),
                "{}: {:#?}\n{doc}",
                file.display(),
                errors(&set)
            );
            assert_eq!(set.resources().len(), 1, "{doc}");
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} valid documents found");
}

#[test]
fn every_invalid_document_is_rejected_for_istios_reason() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in files(
        &testdata("istio-reference/istio-validation"),
        "-invalid.yaml",
    ) {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in documents(&text) {
            let Some(err_line) = doc.lines().find(|l| l.starts_with("_err:")) else {
                continue;
            };
            let want = err_line
                .trim_start_matches("_err:")
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string();
            let set = load(&file.display().to_string(), &doc);
            checked += 1;
            let errs = errors(&set);
            let found = errs
                .iter()
                .any(|d| d.to_string().to_lowercase().contains(&want.to_lowercase()));
            if !found {
                wrong.push(format!(
                    "{}: want {want:?}, got {:?}\n{doc}",
                    file.display(),
                    errs.iter().map(|d| d.to_string()).collect::<Vec<_>>()
                ));
            }
            assert!(
                set.resources().is_empty(),
                "an invalid resource was kept: {doc}"
            );
        }
    }
    assert!(checked >= 60, "only {checked} invalid documents found");
    assert!(
        wrong.is_empty(),
        "{} invalid documents not rejected for Istio's reason:\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

#[test]
fn istio_samples_load_without_errors() {
    let root = testdata("istio-reference/istio-samples");
    let mut sources = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml") {
                sources.push((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    assert!(sources.len() > 30);
    for (name, text) in &sources {
        let set = load(name, text);
        assert!(errors(&set).is_empty(), "{name}: {:#?}", errors(&set));
        assert!(!set.resources().is_empty(), "{name}: nothing read");
    }
}
