use http::{HeaderMap, HeaderValue};

use super::*;
use crate::config::route::{Action, Target};
use crate::testutil::sidecar_snapshot;

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: web, subset: v2}}]
  - name: api
    match: [{uri: {regex: "/api/v[0-9]+/.*"}}, {queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: web, subset: v1}}]
  - name: not-beta
    match: [{uri: {prefix: /beta}, withoutHeaders: {x-beta: {exact: "on"}}}]
    route: [{destination: {host: web, subset: v1}}]
  - name: split
    route:
    - {destination: {host: web, subset: v1}, weight: 75}
    - {destination: {host: web, subset: v2}, weight: 25}
"#;

fn head<'a>(authority: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestHead<'a> {
    RequestHead {
        method: "GET",
        scheme: "http",
        authority,
        path,
        headers,
        random: 0,
    }
}

fn cluster_of(s: &Selected<'_>) -> String {
    match &s.route.action {
        Action::Forward(f) => match &f.target {
            Target::Cluster(c) => c.clone(),
            Target::Weighted(w) => w
                .iter()
                .map(|t| format!("{}={}", t.cluster, t.weight))
                .collect::<Vec<_>>()
                .join(","),
            Target::Header(h) => h.to_string(),
        },
        other => format!("{other:?}"),
    }
}

#[test]
fn translated_virtual_service_routes_like_envoy() {
    let snap = sidecar_snapshot(MESH);
    let rc = snap.routes.get("9080").expect("route config 9080");
    let none = HeaderMap::new();
    let mut jason = HeaderMap::new();
    jason.insert("end-user", HeaderValue::from_static("jason"));
    let v1 = "outbound|9080|v1|web.default.svc.cluster.local";
    let v2 = "outbound|9080|v2|web.default.svc.cluster.local";

    for host in [
        "web",
        "web:9080",
        "web.default",
        "web.default.svc.cluster.local:9080",
        "WEB",
    ] {
        let s = select(rc, &head(host, "/", &jason)).unwrap_or_else(|| panic!("{host}"));
        assert_eq!(s.route.name, "jason", "{host}");
        assert_eq!(cluster_of(&s), v2);
        assert_eq!(s.virtual_host.name, "web.default.svc.cluster.local:9080");
    }
    let s = select(rc, &head("web", "/api/v2/items", &none)).unwrap();
    assert_eq!(
        (s.route.name.as_str(), cluster_of(&s).as_str()),
        ("api", v1)
    );
    // The regex must match the whole path; the query string is not part of it.
    let s = select(rc, &head("web", "/api/v2/items?x=1", &none)).unwrap();
    assert_eq!(s.route.name, "api");
    let s = select(rc, &head("web", "/x/api/v2/items", &none)).unwrap();
    assert_eq!(s.route.name, "split");
    let s = select(rc, &head("web", "/other?debug=1", &none)).unwrap();
    assert_eq!(s.route.name, "api");
    assert_eq!(
        s.index, 2,
        "the second match of rule `api` is the third route"
    );
    let s = select(rc, &head("web", "/other?debug=2", &none)).unwrap();
    assert_eq!(s.route.name, "split");
    // Query values are compared as sent, not percent-decoded (Envoy's matcher does the same).
    let s = select(rc, &head("web", "/other?debug=%31", &none)).unwrap();
    assert_eq!(s.route.name, "split");
    assert_eq!(cluster_of(&s), format!("{v1}=75,{v2}=25"));
    // Envoy: an absent header never matches an inverted string matcher.
    let s = select(rc, &head("web", "/beta", &none)).unwrap();
    assert_eq!(s.route.name, "split");
    let mut off = HeaderMap::new();
    off.insert("x-beta", HeaderValue::from_static("off"));
    assert_eq!(
        select(rc, &head("web", "/beta", &off)).unwrap().route.name,
        "not-beta"
    );
    // A host nobody declared never lands on web's virtual host.
    let other = select(rc, &head("unknown.example", "/", &none));
    assert!(other.is_none_or(|s| s.virtual_host.name != "web.default.svc.cluster.local:9080"));
}

fn vh(name: &str, domains: &[&str]) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes: Vec::new(),
        require_tls: false,
    }
}

#[test]
fn virtual_host_domains_in_envoy_order() {
    let rc = RouteConfig {
        name: "rc".into(),
        ignore_port_in_host_matching: false,
        virtual_hosts: vec![
            vh("default", &["*"]),
            vh("prefix", &["api.*"]),
            vh("short-suffix", &["*.com"]),
            vh("suffix", &["*.example.com"]),
            vh("exact", &["www.example.com", "www.example.com:8080"]),
        ],
    };
    let pick = |h: &str| virtual_host(&rc, h).map(|v| v.name.as_str());
    assert_eq!(pick("www.example.com"), Some("exact"));
    assert_eq!(pick("WWW.Example.com:8080"), Some("exact"));
    assert_eq!(pick("a.example.com"), Some("suffix"), "longest suffix wins");
    assert_eq!(pick("x.com"), Some("short-suffix"));
    assert_eq!(
        pick("api.example.com"),
        Some("suffix"),
        "suffixes before prefixes"
    );
    assert_eq!(pick("api.internal"), Some("prefix"));
    assert_eq!(
        pick(".example.com"),
        Some("short-suffix"),
        "a wildcard stands for one character at least"
    );
    assert_eq!(
        pick("www.example.com:9090"),
        Some("default"),
        "ports are part of the host"
    );
    assert_eq!(pick("elsewhere"), Some("default"));
    let stripped = RouteConfig {
        ignore_port_in_host_matching: true,
        ..rc.clone()
    };
    assert_eq!(
        virtual_host(&stripped, "www.example.com:9090").map(|v| v.name.as_str()),
        Some("exact")
    );
    let no_default = RouteConfig {
        virtual_hosts: vec![vh("exact", &["a"])],
        ..rc
    };
    assert!(virtual_host(&no_default, "b").is_none());
}

#[test]
fn header_matchers_follow_envoy_absent_rules() {
    use crate::config::matcher::{StrMatch, StringMatch};
    let m = |matcher, invert| HeaderMatcher {
        name: "x".into(),
        matcher,
        invert,
        treat_missing_as_empty: false,
    };
    let exact = || {
        HeaderMatch::String(StringMatch {
            pattern: StrMatch::Exact("a".into()),
            ignore_case: false,
        })
    };
    let none = HeaderMap::new();
    let mut with = HeaderMap::new();
    with.append("x", HeaderValue::from_static("a"));
    assert!(header_matches(
        &m(HeaderMatch::Present(true), false),
        &head("h", "/", &with)
    ));
    assert!(!header_matches(
        &m(HeaderMatch::Present(true), false),
        &head("h", "/", &none)
    ));
    assert!(header_matches(
        &m(HeaderMatch::Present(false), false),
        &head("h", "/", &none)
    ));
    assert!(header_matches(
        &m(HeaderMatch::Present(true), true),
        &head("h", "/", &none)
    ));
    assert!(header_matches(&m(exact(), false), &head("h", "/", &with)));
    assert!(!header_matches(&m(exact(), true), &head("h", "/", &with)));
    assert!(
        !header_matches(&m(exact(), true), &head("h", "/", &none)),
        "absent + inverted string: no match"
    );
    with.append("x", HeaderValue::from_static("b"));
    assert!(
        header_matches(&m(exact(), false), &head("h", "/", &with)),
        "one of the values matches (as Envoy)"
    );
    let mut joined = HeaderMap::new();
    joined.insert("x", HeaderValue::from_static("a,b"));
    assert!(!header_matches(
        &m(exact(), false),
        &head("h", "/", &joined)
    ));
    let range = m(HeaderMatch::Range(10, 20), false);
    let mut n = HeaderMap::new();
    n.insert("x", HeaderValue::from_static("19"));
    assert!(header_matches(&range, &head("h", "/", &n)));
    n.insert("x", HeaderValue::from_static("20"));
    assert!(!header_matches(&range, &head("h", "/", &n)));
    let method = HeaderMatcher {
        name: ":method".into(),
        ..m(exact(), false)
    };
    assert!(!header_matches(&method, &head("h", "/", &none)));
}

#[test]
fn paths_and_fractions() {
    use crate::config::matcher::PerMillion;
    let mk = |path, case_sensitive| RouteMatch {
        path,
        case_sensitive,
        headers: Vec::new(),
        query: Vec::new(),
        runtime_fraction: None,
    };
    let none = HeaderMap::new();
    let at = |p: &'static str| head("h", p, &none);
    let sep = mk(PathMatch::SeparatedPrefix("/api".into()), true);
    assert!(route_matches(&sep, &at("/api")));
    assert!(route_matches(&sep, &at("/api/x")));
    assert!(route_matches(&sep, &at("/api?x")));
    assert!(!route_matches(&sep, &at("/apix")));
    let exact = mk(PathMatch::Exact("/Login".into()), true);
    assert!(route_matches(&exact, &at("/Login?next=/")));
    assert!(!route_matches(&exact, &at("/login")));
    let insensitive = mk(PathMatch::Exact("/login".into()), false);
    assert!(route_matches(&insensitive, &at("/LOGIN")));
    let mut half = mk(PathMatch::Prefix("/".into()), true);
    half.runtime_fraction = Some(PerMillion(500_000));
    let mut hits = 0;
    for random in 0..1000u64 {
        let r = RequestHead {
            random: random * 1000,
            ..at("/")
        };
        hits += usize::from(route_matches(&half, &r));
    }
    assert_eq!(hits, 500);
}
