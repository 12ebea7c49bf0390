//! Test helpers: xDS resources from Istio YAML through the real translator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{translate, ProxyNode, XdsResources};

use crate::config::Snapshot;

pub fn resources(yaml: &str, node_id: &str, labels: &[(&str, &str)]) -> XdsResources {
    let set = ConfigSet::load([("test.yaml", yaml)], &LoadOptions::default());
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let reg = Registry::build(&set);
    let mut node = ProxyNode::parse_id(node_id).unwrap();
    for (k, v) in labels {
        node.labels.insert(k.to_string(), v.to_string());
    }
    translate(&set, &reg, &node)
}

pub fn sidecar_snapshot(yaml: &str) -> Snapshot {
    let x = resources(
        yaml,
        "sidecar~10.0.0.1~client-1.default~default.svc.cluster.local",
        &[("app", "client")],
    );
    Snapshot::from_xds(&x).unwrap()
}

pub fn gateway_snapshot(yaml: &str) -> Snapshot {
    let x = resources(
        yaml,
        "router~10.0.0.2~gw-1.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway")],
    );
    Snapshot::from_xds(&x).unwrap()
}
