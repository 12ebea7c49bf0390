//! VirtualService HTTP features, one test per mapping to Envoy's route API.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{fault_abort, HttpFault};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web, namespace: default}}\nspec:\n  hosts: [web]\n  http:\n{http}"
    )
}

#[test]
fn no_virtual_service_routes_to_the_default_cluster() {
    let x = run("");
    let r = web_routes(&x);
    assert_eq!(r.len(), 1);
    assert_eq!(
        action(&r[0]).cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(
            "outbound|9080||web.default.svc.cluster.local".into()
        ))
    );
    let domains = &vhost(&x, "9080", WEB).domains;
    for d in [
        "web",
        "web:9080",
        "web.default",
        "web.default.svc.cluster.local:9080",
    ] {
        assert!(domains.iter().any(|x| x == d), "{d} in {domains:?}");
    }
}

#[test]
fn uri_matches_map_to_path_prefix_and_regex() {
    let x = run(&vs(r#"
  - match:
    - uri: {exact: /a}
    - uri: {prefix: /b}
    - uri: {regex: "/c/[0-9]+"}
      ignoreUriCase: true
    route: [{destination: {host: web, subset: v1}}]
"#));
    let r = web_routes(&x);
    assert_eq!(r.len(), 3);
    let spec = |i: usize| {
        r[i].r#match
            .as_ref()
            .unwrap()
            .path_specifier
            .clone()
            .unwrap()
    };
    assert_eq!(spec(0), route_match::PathSpecifier::Path("/a".into()));
    assert_eq!(spec(1), route_match::PathSpecifier::Prefix("/b".into()));
    match spec(2) {
        route_match::PathSpecifier::SafeRegex(re) => assert_eq!(re.regex, "/c/[0-9]+"),
        other => panic!("{other:?}"),
    }
    assert!(
        !r[2]
            .r#match
            .as_ref()
            .unwrap()
            .case_sensitive
            .as_ref()
            .unwrap()
            .value
    );
}

#[test]
fn headers_pseudo_headers_query_params_and_without_headers() {
    let x = run(&vs(r#"
  - match:
    - headers: {end-user: {exact: jason}, x-any: {}}
      withoutHeaders: {x-debug: {prefix: "1"}}
      queryParams: {q: {regex: "a.*"}, flag: {}}
      method: {exact: GET}
      authority: {prefix: web}
      scheme: {exact: https}
    route: [{destination: {host: web}}]
"#));
    let m = web_routes(&x)[0].r#match.clone().unwrap();
    let names: Vec<(&str, bool)> = m
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.invert_match))
        .collect();
    assert_eq!(
        names,
        [
            (":method", false),
            (":authority", false),
            (":scheme", false),
            ("end-user", false),
            ("x-any", false),
            ("x-debug", true),
        ]
    );
    assert_eq!(
        m.headers[4].header_match_specifier,
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
    );
    match &m.headers[3].header_match_specifier {
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(s)) => {
            assert_eq!(s.match_pattern, Some(MatchPattern::Exact("jason".into())))
        }
        other => panic!("{other:?}"),
    }
    let q: Vec<&str> = m.query_parameters.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(q, ["flag", "q"]);
    assert_eq!(
        m.query_parameters[0].query_parameter_match_specifier,
        Some(query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true))
    );
}

#[test]
fn matches_for_other_ports_sources_and_gateways_are_left_out() {
    let x = run(&vs(r#"
  - match:
    - {port: 8080, uri: {prefix: /port}}
    - {sourceLabels: {app: other}, uri: {prefix: /labels}}
    - {sourceNamespace: other, uri: {prefix: /ns}}
    - {gateways: [some-gateway], uri: {prefix: /gw}}
    - {sourceLabels: {app: client}, uri: {prefix: /mine}}
    route: [{destination: {host: web}}]
"#));
    let r = web_routes(&x);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].r#match.as_ref().unwrap().path_specifier,
        Some(route_match::PathSpecifier::Prefix("/mine".into()))
    );
}

#[test]
fn weighted_destinations_become_weighted_clusters() {
    let x = run(&vs(r#"
  - route:
    - {destination: {host: web, subset: v1}, weight: 80}
    - {destination: {host: web.default.svc.cluster.local, subset: v2}, weight: 20, headers: {request: {set: {x-canary: "yes"}}}}
"#));
    match &action(&web_routes(&x)[0]).cluster_specifier {
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
            let got: Vec<(&str, u32)> = w
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
                .collect();
            assert_eq!(
                got,
                [
                    ("outbound|9080|v1|web.default.svc.cluster.local", 80),
                    ("outbound|9080|v2|web.default.svc.cluster.local", 20)
                ]
            );
            assert_eq!(
                w.clusters[1].request_headers_to_add[0]
                    .header
                    .as_ref()
                    .unwrap()
                    .key,
                "x-canary"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn redirect_and_direct_response() {
    let x = run(&vs(r#"
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: other.example, redirectCode: 308, scheme: https}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
"#));
    let r = web_routes(&x);
    match &r[0].action {
        Some(route::Action::Redirect(rd)) => {
            assert_eq!(rd.host_redirect, "other.example");
            assert_eq!(
                rd.response_code,
                redirect_action::RedirectResponseCode::PermanentRedirect as i32
            );
            assert_eq!(
                rd.path_rewrite_specifier,
                Some(redirect_action::PathRewriteSpecifier::PathRedirect(
                    "/new".into()
                ))
            );
            assert_eq!(
                rd.scheme_rewrite_specifier,
                Some(redirect_action::SchemeRewriteSpecifier::SchemeRedirect(
                    "https".into()
                ))
            );
        }
        other => panic!("{other:?}"),
    }
    match &r[1].action {
        Some(route::Action::DirectResponse(d)) => {
            assert_eq!(d.status, 418);
            assert!(d.body.is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rewrites_timeout_and_retries() {
    let x = run(&vs(r#"
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2, authority: backend.internal}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "5xx,gateway-error,429"}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /re}}]
    rewrite: {uriRegexRewrite: {match: "^/re/(.*)", rewrite: "/\\1"}}
    retries: {attempts: 0}
    route: [{destination: {host: web}}]
"#));
    let r = web_routes(&x);
    let a = action(&r[0]);
    assert_eq!(a.prefix_rewrite, "/v2");
    assert_eq!(
        a.host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "backend.internal".into()
        ))
    );
    assert_eq!(a.timeout.as_ref().unwrap().seconds, 3);
    let rp = a.retry_policy.as_ref().unwrap();
    assert_eq!(rp.num_retries.as_ref().unwrap().value, 4);
    assert_eq!(rp.retry_on, "5xx,gateway-error,retriable-status-codes");
    assert_eq!(rp.retriable_status_codes, [429]);
    assert_eq!(rp.per_try_timeout.as_ref().unwrap().nanos, 500_000_000);
    let b = action(&r[1]);
    assert_eq!(b.regex_rewrite.as_ref().unwrap().substitution, "/\\1");
    assert!(b.retry_policy.is_none(), "attempts: 0 turns retries off");
    // No timeout in the rule: Envoy's 15 s default is turned off, as Istio does.
    assert_eq!(action(&r[1]).timeout.as_ref().unwrap().seconds, 0);
}

#[test]
fn fault_delay_and_abort_go_to_the_fault_filter() {
    let x = run(&vs(r#"
  - fault:
      delay: {fixedDelay: 7s, percentage: {value: 12.5}}
      abort: {httpStatus: 503, percentage: {value: 100}}
    route: [{destination: {host: web}}]
"#));
    let r = &web_routes(&x)[0];
    let f: HttpFault = unpack(&r.typed_per_filter_config["envoy.filters.http.fault"]);
    let d = f.delay.unwrap();
    assert_eq!(d.percentage.unwrap().numerator, 125_000);
    assert!(matches!(
        d.fault_delay_secifier,
        Some(fault_delay::FaultDelaySecifier::FixedDelay(ref t)) if t.seconds == 7
    ));
    let a = f.abort.unwrap();
    assert_eq!(a.error_type, Some(fault_abort::ErrorType::HttpStatus(503)));
    assert_eq!(a.percentage.unwrap().numerator, 1_000_000);
}

#[test]
fn mirrors_with_percentages() {
    let x = run(&vs(r#"
  - match: [{uri: {prefix: /one}}]
    route: [{destination: {host: web, subset: v1}}]
    mirror: {host: web, subset: v2}
    mirrorPercentage: {value: 25}
  - route: [{destination: {host: web, subset: v1}}]
    mirrors:
    - {destination: {host: web, subset: v2}}
    - {destination: {host: db, port: {number: 5432}}, percentage: {value: 5}}
"#));
    let pct = |m: &route_action::RequestMirrorPolicy| {
        m.runtime_fraction
            .as_ref()
            .unwrap()
            .default_value
            .unwrap()
            .numerator
    };
    let one = &action(&web_routes(&x)[0]).request_mirror_policies;
    assert_eq!(one.len(), 1);
    assert_eq!(
        one[0].cluster,
        "outbound|9080|v2|web.default.svc.cluster.local"
    );
    assert_eq!(pct(&one[0]), 250_000);
    let many = &action(&web_routes(&x)[1]).request_mirror_policies;
    assert_eq!(many.len(), 2);
    assert_eq!((pct(&many[0]), pct(&many[1])), (1_000_000, 50_000));
    assert_eq!(
        many[1].cluster,
        "outbound|5432||db.default.svc.cluster.local"
    );
}

#[test]
fn cors_policy_goes_to_the_cors_filter() {
    let x = run(&vs(r#"
  - corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {regex: ".*\\.b\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: web}}]
"#));
    let r = &web_routes(&x)[0];
    let c: CorsPolicy = unpack(&r.typed_per_filter_config["envoy.filters.http.cors"]);
    assert_eq!(c.allow_origin_string_match.len(), 2);
    assert_eq!(c.allow_methods, "GET,POST");
    assert_eq!(c.max_age, "86400");
    assert!(c.allow_credentials.unwrap().value);
}

#[test]
fn header_set_add_remove() {
    let x = run(&vs(r#"
  - headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {remove: [server]}
    route: [{destination: {host: web}}]
"#));
    let r = &web_routes(&x)[0];
    let keys: Vec<(&str, i32)> = r
        .request_headers_to_add
        .iter()
        .map(|h| (h.header.as_ref().unwrap().key.as_str(), h.append_action))
        .collect();
    // OVERWRITE_IF_EXISTS_OR_ADD = 2 for set, APPEND_IF_EXISTS_OR_ADD = 0 for add.
    assert_eq!(keys, [("x-a", 2), ("x-b", 0)]);
    assert_eq!(r.request_headers_to_remove, ["x-c"]);
    assert_eq!(r.response_headers_to_remove, ["server"]);
}

#[test]
fn registry_only_blocks_unknown_hosts() {
    let mesh = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    outboundTrafficPolicy:\n      mode: REGISTRY_ONLY\n";
    let x = run(mesh);
    let vh = vhost(&x, "9080", "block_all");
    assert!(matches!(
        vh.routes[0].action,
        Some(route::Action::DirectResponse(ref d)) if d.status == 502
    ));
    let l = listener(&x, "virtualOutbound");
    assert_eq!(l.filter_chains[0].filters.len(), 1);
    let allow = run("");
    assert!(vhost(&allow, "9080", "allow_any").domains == ["*"]);
}

#[test]
fn delegate_rules_are_merged_with_the_root_match() {
    let yaml = format!(
        "{}---\n{}",
        vs(r#"
  - match: [{uri: {prefix: /api}, headers: {x-team: {exact: a}}}]
    delegate: {name: web-api, namespace: team}
  - route: [{destination: {host: web, subset: v1}}]
"#),
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-api, namespace: team}
spec:
  http:
  - match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: web.default.svc.cluster.local, subset: v2}}]
  - route: [{destination: {host: web.default.svc.cluster.local, subset: v1}}]
"#
    );
    let x = run(&yaml);
    let r = web_routes(&x);
    assert_eq!(r.len(), 3);
    let m0 = r[0].r#match.as_ref().unwrap();
    assert_eq!(
        m0.path_specifier,
        Some(route_match::PathSpecifier::Prefix("/api/v2".into()))
    );
    assert_eq!(m0.headers[0].name, "x-team", "root header kept");
    assert_eq!(
        action(&r[0]).cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(
            "outbound|9080|v2|web.default.svc.cluster.local".into()
        ))
    );
    assert_eq!(
        r[1].r#match.as_ref().unwrap().path_specifier,
        Some(route_match::PathSpecifier::Prefix("/api".into())),
        "a delegate rule without match takes the root's"
    );
}

#[test]
fn zero_weight_destinations_are_dropped() {
    let x = run(&vs(r#"
  - route:
    - {destination: {host: web, subset: v1}, weight: 100}
    - {destination: {host: web, subset: v2}, weight: 0}
"#));
    match &action(&web_routes(&x)[0]).cluster_specifier {
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
            let weights: Vec<u32> = w
                .clusters
                .iter()
                .map(|c| c.weight.as_ref().unwrap().value)
                .collect();
            assert_eq!(weights, [100]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mesh_default_retry_policy_applies_where_rules_say_nothing() {
    let mesh = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    defaultHttpRetryPolicy:\n      attempts: 5\n      retryOn: reset\n";
    let x = run(mesh);
    let rp = action(&web_routes(&x)[0]).retry_policy.clone().unwrap();
    assert_eq!(rp.num_retries.unwrap().value, 5);
    assert_eq!(rp.retry_on, "reset");
}

#[test]
fn routes_name_their_virtual_service_like_istiod() {
    use envoy_types::pb::google::protobuf::value::Kind;
    let x = run(&vs(r#"
  - route: [{destination: {host: web}}]
"#));
    let r = web_routes(&x);
    let source = r[0].metadata.as_ref().unwrap().filter_metadata["istio"].fields["config"]
        .kind
        .clone();
    assert_eq!(
        source,
        Some(Kind::StringValue(
            "/apis/networking.istio.io/v1alpha3/namespaces/default/virtual-service/web".into()
        ))
    );
    // The default route (no VirtualService) names none.
    let x = run("");
    assert!(web_routes(&x)[0].metadata.is_none());
}
