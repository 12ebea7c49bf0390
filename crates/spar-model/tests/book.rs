//! Every YAML example of the book's chapters 2-4 and 6 (indentation restored, see
//! testdata/book/README.md) parses into resources Spar knows. What Spar then says about
//! each one (the book predates today's Istio, and has typos) is pinned in
//! `testdata/book/expected-diagnostics.txt`; regenerate it with `SPAR_BLESS=1`.

// A failed read of test data should fail the test where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use spar_model::{ConfigSet, LoadOptions, Severity};

fn book_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/book")
}

fn book_files() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(book_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("book/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Problems that mean "could not even read it": YAML syntax, unknown kinds, wrong types
/// in the envelope. Validation findings are fine (and pinned below).
fn unreadable(message: &str) -> bool {
    message.starts_with("YAML syntax error")
        || message.contains("unknown kind")
        || message.contains("is not served as")
}

#[test]
fn every_book_example_parses() {
    let files = book_files();
    assert!(files.len() >= 60, "only {} book files", files.len());
    let mut resources = 0;
    for (name, text) in &files {
        // One file at a time, so one example's names cannot replace another's.
        let set = ConfigSet::load([(name.as_str(), text.as_str())], &LoadOptions::default());
        for d in set.diagnostics() {
            assert!(!(d.is_error() && unreadable(&d.message)), "{name}: {d}");
        }
        let docs = text.matches("\nkind:").count() + usize::from(text.starts_with("kind:"));
        let errors = set.diagnostics().iter().filter(|d| d.is_error()).count();
        let replaced = set
            .diagnostics()
            .iter()
            .filter(|d| d.message.contains("defined more than once"))
            .count();
        let read = set.resources().len() + replaced;
        assert!(
            read + errors >= docs,
            "{name}: {docs} documents, {read} read, {errors} errors"
        );
        resources += set.resources().len();
    }
    assert!(
        resources >= 60,
        "only {resources} resources read from the book"
    );
}

#[test]
fn what_spar_says_about_the_book_is_pinned() {
    let mut lines = Vec::new();
    for (name, text) in book_files() {
        let set = ConfigSet::load([(name.as_str(), text.as_str())], &LoadOptions::default());
        for d in set.diagnostics() {
            if d.severity == Severity::Error || d.message.contains("removed in Istio") {
                // First line only: deprecation warnings carry the converted YAML after it.
                lines.push(d.to_string().lines().next().unwrap_or_default().to_string());
            }
        }
    }
    let got = lines.join("\n") + "\n";
    let path = book_dir().join("expected-diagnostics.txt");
    if std::env::var_os("SPAR_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "diagnostics for the book changed; if intended, rerun with SPAR_BLESS=1 and review the diff");
}
