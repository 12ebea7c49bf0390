use super::check;
use crate::istio::types::EnvoyFilter;
use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};

fn run(cases: &[(&str, &str, Option<&str>)]) {
    run_cases::<EnvoyFilter>(|s| check(s, &CTX), cases);
}

fn patch(p: &str) -> String {
    format!("{{configPatches: [{{{p}}}]}}")
}

const HCM_MATCH: &str = "match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}";

#[test]
fn patches() {
    run(&[
        ("insert before router", &patch(&format!("applyTo: HTTP_FILTER, {HCM_MATCH}, patch: {{operation: INSERT_BEFORE, value: {{name: lua}}}}")), None),
        ("add cluster", &patch("applyTo: CLUSTER, patch: {operation: ADD, value: {name: c}}"), None),
        ("remove", &patch("applyTo: CLUSTER, match: {cluster: {name: c}}, patch: {operation: REMOVE}"), None),
        ("no applyTo", &patch("patch: {operation: ADD, value: {}}"), Some("applyTo is required")),
        ("invalid applyTo", &patch("applyTo: INVALID, patch: {operation: ADD, value: {}}"), Some("applyTo is required")),
        ("no patch", &patch("applyTo: CLUSTER"), Some("patch is required")),
        ("no operation", &patch("applyTo: CLUSTER, patch: {value: {}}"), Some("patch.operation is required")),
        ("no value", &patch("applyTo: CLUSTER, patch: {operation: MERGE}"), Some("patch.value is required for MERGE")),
        ("proxy version", &patch("applyTo: CLUSTER, match: {proxy: {proxyVersion: '^1\\.2[0-9].*'}}, patch: {operation: MERGE, value: {}}"), None),
        ("bad proxy version", &patch("applyTo: CLUSTER, match: {proxy: {proxyVersion: '1.(2'}}, patch: {operation: MERGE, value: {}}"), Some("proxyVersion must be a regex")),
        ("cluster with listener match", &patch("applyTo: CLUSTER, match: {listener: {portNumber: 80}}, patch: {operation: MERGE, value: {}}"), Some("needs a cluster match")),
        ("route with cluster match", &patch("applyTo: HTTP_ROUTE, match: {cluster: {name: c}}, patch: {operation: MERGE, value: {}}"), Some("needs a routeConfiguration match")),
        ("filter with route match", &patch("applyTo: HTTP_FILTER, match: {routeConfiguration: {}}, patch: {operation: MERGE, value: {}}"), Some("needs a listener match")),
        ("two kinds", &patch("applyTo: CLUSTER, match: {cluster: {}, listener: {}}, patch: {operation: MERGE, value: {}}"), Some("set only one of listener")),
        ("filter without name", &patch("applyTo: NETWORK_FILTER, match: {listener: {filterChain: {filter: {}}}}, patch: {operation: MERGE, value: {}}"), Some("needs the filter's name")),
        ("subFilter on network filter", &patch("applyTo: NETWORK_FILTER, match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: x}}}}}, patch: {operation: MERGE, value: {}}"), Some("only be used with applyTo HTTP_FILTER")),
        ("subFilter under tcp proxy", &patch("applyTo: HTTP_FILTER, match: {listener: {filterChain: {filter: {name: envoy.filters.network.tcp_proxy, subFilter: {name: x}}}}}, patch: {operation: MERGE, value: {}}"), Some("requires the filter match to name")),
        ("subFilter without name", &patch("applyTo: HTTP_FILTER, match: {listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {}}}}}, patch: {operation: MERGE, value: {}}"), Some("needs the HTTP filter's name")),
        ("waypoint skipped", &patch("applyTo: HTTP_FILTER, match: {context: WAYPOINT, waypoint: {}}, patch: {operation: REMOVE}"), None),
        ("bad selector", "{workloadSelector: {labels: {app: 'x y'}}, configPatches: []}", Some("label value")),
    ]);
}

#[test]
fn ignored_combinations_warn() {
    let warned = |y: &str| {
        let d = check(&spec::<EnvoyFilter>(y), &CTX);
        assert!(errors(&d).is_empty(), "{d:?}");
        warnings(&d)
    };
    assert!(warned(&patch(
        "applyTo: CLUSTER, patch: {operation: INSERT_FIRST, value: {}}"
    ))
    .iter()
    .any(|w| w.contains("no effect on applyTo CLUSTER")));
    assert!(warned(&patch(
        "applyTo: ROUTE_CONFIGURATION, patch: {operation: ADD, value: {}}"
    ))
    .iter()
    .any(|w| w.contains("no effect")));
    assert!(warned(&patch(
        "applyTo: EXTENSION_CONFIG, patch: {operation: MERGE, value: {}}"
    ))
    .iter()
    .any(|w| w.contains("no effect")));
    assert!(warned(&patch(
        "applyTo: CLUSTER, patch: {operation: REMOVE, value: {}}"
    ))
    .iter()
    .any(|w| w.contains("ignored by REMOVE")));
    assert!(warned(&patch("applyTo: HTTP_FILTER, match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}, patch: {operation: REMOVE}"))
        .iter()
        .any(|w| w.contains("nothing happens")));
    assert!(warned(&patch("applyTo: LISTENER, match: {listener: {filterChain: {filter: {name: x}}}}, patch: {operation: MERGE, value: {}}"))
        .iter()
        .any(|w| w.contains("has no effect with applyTo LISTENER")));
    assert!(warned(&patch(
        "applyTo: HTTP_FILTER, patch: {operation: MERGE_AND_REPLACE_LIST, value: {}}"
    ))
    .is_empty());
}
