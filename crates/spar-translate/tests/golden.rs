//! Golden tests: bookinfo through the translator, rendered with `spar_translate::summary`
//! and compared with `tests/golden/*.txt`. Regenerate with `SPAR_BLESS=1 cargo test`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use prost::Message;
use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{summary, translate, ProxyNode, XdsResources};

const BOOKINFO: &str = "../../testdata/istio-reference/istio-samples/bookinfo";

fn read(rel: &str) -> (String, String) {
    let path = format!("{BOOKINFO}/{rel}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (path, text)
}

fn bookinfo() -> ConfigSet {
    let files: Vec<(String, String)> = [
        "platform/kube/bookinfo.yaml",
        "networking/bookinfo-gateway.yaml",
        "networking/destination-rule-all.yaml",
        "networking/virtual-service-reviews-80-20.yaml",
        "networking/virtual-service-ratings-test-delay.yaml",
        "networking/egress-rule-google-apis.yaml",
    ]
    .iter()
    .map(|f| read(f))
    .collect();
    let set = ConfigSet::load(
        files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
        &LoadOptions::default(),
    );
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    set
}

fn node(id: &str, labels: &[(&str, &str)]) -> ProxyNode {
    let mut n = ProxyNode::parse_id(id).unwrap();
    n.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    n
}

fn productpage() -> ProxyNode {
    node(
        "sidecar~10.1.0.5~productpage-v1-7d6cbc9b4c-abcde.default~default.svc.cluster.local",
        &[("app", "productpage"), ("version", "v1")],
    )
}

fn ingress() -> ProxyNode {
    node(
        "router~10.1.0.9~istio-ingressgateway-5d9c-xyz.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway"), ("app", "istio-ingressgateway")],
    )
}

fn check_golden(name: &str, x: &XdsResources) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    let got = summary::render(x);
    if std::env::var_os("SPAR_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with SPAR_BLESS=1", path.display()));
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{} differs from the translation (first at line {}):\n got: {}\nwant: {}\nrun with SPAR_BLESS=1 to accept",
            path.display(),
            first + 1,
            got.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>")
        );
    }
}

#[test]
fn golden_bookinfo_productpage_sidecar() {
    let set = bookinfo();
    let reg = Registry::build(&set);
    check_golden(
        "bookinfo-productpage",
        &translate(&set, &reg, &productpage()),
    );
}

#[test]
fn golden_bookinfo_ingress_gateway() {
    let set = bookinfo();
    let reg = Registry::build(&set);
    check_golden(
        "bookinfo-ingressgateway",
        &translate(&set, &reg, &ingress()),
    );
}

fn encode_all(x: &XdsResources) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    out.extend(x.listeners.iter().map(Message::encode_to_vec));
    out.extend(x.routes.iter().map(Message::encode_to_vec));
    out.extend(x.clusters.iter().map(Message::encode_to_vec));
    out.extend(x.endpoints.iter().map(Message::encode_to_vec));
    out
}

#[test]
fn translation_is_byte_for_byte_deterministic() {
    for n in [productpage(), ingress()] {
        let a = {
            let set = bookinfo();
            let reg = Registry::build(&set);
            translate(&set, &reg, &n)
        };
        let b = {
            let set = bookinfo();
            let reg = Registry::build(&set);
            translate(&set, &reg, &n)
        };
        assert_eq!(encode_all(&a), encode_all(&b), "{}", n.id);
        assert!(!a.listeners.is_empty() && !a.clusters.is_empty());
    }
}
