//! Locality load balancing: failover priorities and distribute weights per proxy locality.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::LocalityConfigSpecifier;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use spar_translate::{NodeClass, ProxyNode, XdsResources};

const CLUSTER: &str = "outbound|80||api.example.internal";

fn entry(lb: &str, outlier: bool) -> String {
    let od = if outlier {
        "\n    outlierDetection: {consecutive5xxErrors: 3, interval: 10s, baseEjectionTime: 30s}"
    } else {
        ""
    };
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 10.1.0.1, locality: us-east/a/1, labels: {{rack: r1}}}}
  - {{address: 10.1.0.2, locality: us-east/a/2, labels: {{rack: r2}}}}
  - {{address: 10.1.0.3, locality: us-east/b/1}}
  - {{address: 10.2.0.1, locality: eu-west/x/1}}
  - {{address: 10.3.0.1, locality: ap-south/y/1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api, namespace: default}}
spec:
  host: api.example.internal
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN{lb}{od}
"#
    )
}

fn at(locality: &str) -> ProxyNode {
    let mut n = client();
    n.locality = locality.to_string();
    n.labels.insert("rack".into(), "r1".into());
    n
}

fn cla(x: &XdsResources) -> &ClusterLoadAssignment {
    x.endpoints
        .iter()
        .find(|e| e.cluster_name == CLUSTER)
        .unwrap()
}

/// (locality, priority, weight) per group.
fn groups(x: &XdsResources) -> Vec<(String, u32, u32)> {
    cla(x)
        .endpoints
        .iter()
        .map(|g| {
            let l = g.locality.clone().unwrap_or_default();
            (
                format!("{}/{}/{}", l.region, l.zone, l.sub_zone),
                g.priority,
                g.load_balancing_weight.as_ref().map_or(0, |w| w.value),
            )
        })
        .collect()
}

fn priorities(x: &XdsResources) -> Vec<(String, u32)> {
    groups(x).into_iter().map(|(l, p, _)| (l, p)).collect()
}

#[test]
fn failover_ranks_subzone_zone_region_then_the_rest() {
    let x = run_for(&entry("", true), &at("us-east/a/1"));
    assert_eq!(
        priorities(&x),
        [
            ("ap-south/y/1".to_string(), 3),
            ("eu-west/x/1".to_string(), 3),
            ("us-east/a/1".to_string(), 0),
            ("us-east/a/2".to_string(), 1),
            ("us-east/b/1".to_string(), 2),
        ]
    );
    // Priorities are renumbered without gaps when a level is empty.
    let x = run_for(&entry("", true), &at("us-east/c/9"));
    let p: Vec<u32> = priorities(&x).into_iter().map(|(_, p)| p).collect();
    assert_eq!(p, [1, 1, 0, 0, 0]);
}

#[test]
fn without_outlier_detection_nothing_fails_over() {
    let x = run_for(&entry("", false), &at("us-east/a/1"));
    assert!(priorities(&x).iter().all(|(_, p)| *p == 0));
}

#[test]
fn explicit_failover_prefers_the_named_region() {
    let lb = "\n      localityLbSetting:\n        enabled: true\n        failover: [{from: us-east, to: eu-west}]";
    let x = run_for(&entry(lb, true), &at("us-east/a/1"));
    let p: Vec<(String, u32)> = priorities(&x);
    assert_eq!(p[0], ("ap-south/y/1".to_string(), 4), "{p:?}");
    assert_eq!(p[1], ("eu-west/x/1".to_string(), 3), "{p:?}");
}

#[test]
fn disabled_setting_turns_priorities_off() {
    let lb = "\n      localityLbSetting: {enabled: false}";
    let x = run_for(&entry(lb, true), &at("us-east/a/1"));
    assert!(priorities(&x).iter().all(|(_, p)| *p == 0));
}

#[test]
fn distribute_sets_locality_weights_and_drops_unnamed_localities() {
    let lb = r#"
      localityLbSetting:
        enabled: true
        distribute:
        - from: us-east/a/*
          to: {"us-east/a/*": 80, "eu-west/*": 20}"#;
    let x = run_for(&entry(lb, false), &at("us-east/a/1"));
    assert_eq!(
        groups(&x),
        [
            ("eu-west/x/1".to_string(), 0, 20),
            ("us-east/a/1".to_string(), 0, 40),
            ("us-east/a/2".to_string(), 0, 40),
        ]
    );
    let c = cluster(&x, CLUSTER);
    assert!(matches!(
        c.common_lb_config
            .as_ref()
            .unwrap()
            .locality_config_specifier,
        Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
    ));
    // A proxy no `from` matches keeps every locality with its own weight.
    let x = run_for(&entry(lb, false), &at("eu-west/x/1"));
    assert_eq!(groups(&x).len(), 5);
}

#[test]
fn failover_priority_ranks_by_matching_labels_first() {
    let lb = "\n      localityLbSetting:\n        enabled: true\n        failoverPriority: [rack]";
    let x = run_for(&entry(lb, true), &at("us-east/a/1"));
    // Only 10.1.0.1 shares the proxy's rack (priority 0); the rest share priority 1.
    let p = priorities(&x);
    assert_eq!(p.iter().filter(|(_, p)| *p == 0).count(), 1, "{p:?}");
    assert_eq!(p.iter().find(|(_, p)| *p == 0).unwrap().0, "us-east/a/1");
}

#[test]
fn locality_is_part_of_the_node_class() {
    let set = config(&entry("", true));
    let reg = spar_registry::Registry::build(&set);
    assert_ne!(
        NodeClass::of(&reg, &at("us-east/a/1")),
        NodeClass::of(&reg, &at("eu-west/x/1"))
    );
}
