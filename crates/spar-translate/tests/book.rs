//! Golden: every traffic-management example of the book (`testdata/book/ch02`, `ch04`,
//! `ch06`) translated on its own for a sidecar in `default` and for ingress and egress
//! gateways, next to the services its rules name (`tests/fixtures/book-services.yaml`),
//! rendered with `spar_translate::summary` into `tests/golden/book.txt`.
//! Regenerate with `SPAR_BLESS=1 cargo test`. Resources the model rejects (see
//! `testdata/book/expected-diagnostics.txt`) are simply absent, as in the control plane.

#![allow(clippy::unwrap_used)]

use std::fmt::Write;
use std::path::PathBuf;

use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{summary, translate, ProxyNode};

const SERVICES: &str = include_str!("fixtures/book-services.yaml");

fn node(id: &str, labels: &[(&str, &str)]) -> ProxyNode {
    let mut n = ProxyNode::parse_id(id).unwrap();
    for (k, v) in labels {
        n.labels.insert(k.to_string(), v.to_string());
    }
    n
}

#[test]
fn golden_book_traffic_management_examples() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/book");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.ends_with(".yaml")
                && (n.starts_with("ch02") || n.starts_with("ch04") || n.starts_with("ch06"))
        })
        .collect();
    files.sort();
    let sidecar = node(
        "sidecar~10.0.0.1~sleep-1.default~default.svc.cluster.local",
        &[("app", "sleep")],
    );
    let ingress = node(
        "router~10.0.0.2~ingress-1.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway"), ("app", "istio-ingressgateway")],
    );
    let egress = node(
        "router~10.0.0.3~egress-1.istio-system~istio-system.svc.cluster.local",
        &[("istio", "egressgateway"), ("app", "istio-egressgateway")],
    );
    let mut out = String::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let set = ConfigSet::load(
            [
                ("book-services.yaml", SERVICES),
                (name.as_str(), text.as_str()),
            ],
            &LoadOptions::default(),
        );
        let reg = Registry::build(&set);
        for (role, n) in [
            ("sidecar", &sidecar),
            ("ingress", &ingress),
            ("egress", &egress),
        ] {
            let x = translate(&set, &reg, n);
            if role != "sidecar" && x.listeners.is_empty() {
                continue;
            }
            let _ = writeln!(out, "=== {name} ({role})");
            out.push_str(&summary::render(&x));
        }
    }
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/book.txt");
    if std::env::var_os("SPAR_BLESS").is_some() {
        std::fs::write(&golden, &out).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|_| panic!("{} missing: run with SPAR_BLESS=1", golden.display()));
    if out != want {
        let first = out
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{} differs (first at line {}):\n got: {}\nwant: {}\nrun with SPAR_BLESS=1 to accept",
            golden.display(),
            first + 1,
            out.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>")
        );
    }
}
