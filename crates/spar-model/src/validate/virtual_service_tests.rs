use super::check;
use crate::istio::types::VirtualService;
use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};

fn run(cases: &[(&str, &str, Option<&str>)]) {
    run_cases::<VirtualService>(|s| check(s, &CTX), cases);
}

const ROUTE: &str = "route: [{destination: {host: reviews}}]";

fn http(body: &str) -> String {
    format!("{{hosts: [reviews], http: [{{{body}}}]}}")
}

#[test]
fn hosts_and_delegates() {
    let delegate_ok = format!("{{http: [{{{ROUTE}}}]}}");
    let delegate_gw = format!("{{gateways: [gw], http: [{{{ROUTE}}}]}}");
    let delegate_nested = "{http: [{delegate: {name: other}}]}";
    let delegate_tcp = "{tcp: [{route: [{destination: {host: a}}]}]}";
    let star_mesh = format!("{{hosts: ['*'], http: [{{{ROUTE}}}]}}");
    let star_mesh_listed = format!("{{hosts: ['*'], gateways: [mesh, gw], http: [{{{ROUTE}}}]}}");
    let star_gw = format!("{{hosts: ['*'], gateways: [gw], http: [{{{ROUTE}}}]}}");
    let ip_host = format!("{{hosts: [10.0.0.1], http: [{{{ROUTE}}}]}}");
    let bad_host = format!("{{hosts: [foo_bar.com], http: [{{{ROUTE}}}]}}");
    let dup = format!("{{hosts: [a.foo.com, '*.foo.com'], http: [{{{ROUTE}}}]}}");
    let distinct = format!("{{hosts: [a.foo.com, b.foo.com], http: [{{{ROUTE}}}]}}");
    let no_routes = "{hosts: [reviews]}";
    run(&[
        ("delegate without hosts", &delegate_ok, None),
        (
            "delegate with gateways",
            &delegate_gw,
            Some("must not list gateways"),
        ),
        (
            "delegate delegates again",
            delegate_nested,
            Some("cannot delegate again"),
        ),
        (
            "delegate with tcp",
            delegate_tcp,
            Some("cannot have tcp routes"),
        ),
        (
            "* bound to mesh",
            &star_mesh,
            Some("wildcard host * is not allowed for virtual services bound to the mesh gateway"),
        ),
        (
            "* bound to mesh and gateway",
            &star_mesh_listed,
            Some("wildcard host *"),
        ),
        ("* bound to gateway only", &star_gw, None),
        ("IP host", &ip_host, None),
        ("invalid host", &bad_host, Some("invalid")),
        ("overlapping hosts", &dup, Some("duplicate hosts")),
        ("distinct hosts", &distinct, None),
        (
            "no routes",
            no_routes,
            Some("at least one http, tcp or tls route"),
        ),
    ]);
}

#[test]
fn gateway_names() {
    let case =
        |gws: &str| format!("{{hosts: [a.example.com], gateways: [{gws}], http: [{{{ROUTE}}}]}}");
    run(&[
        ("short name", &case("gw"), None),
        ("namespaced", &case("istio-system/gw"), None),
        ("mesh", &case("mesh"), None),
        (
            "bad namespace",
            &case("Bad_ns/gw"),
            Some("invalid namespace"),
        ),
        ("empty name", &case("ns/"), Some("cannot be empty")),
        (
            "bad name",
            &case("'gw!'"),
            Some("invalid gateway reference"),
        ),
    ]);
    let legacy = check(&spec(&case("gw.istio-system.svc.cluster.local")), &CTX);
    assert!(errors(&legacy).is_empty(), "{legacy:?}");
    assert!(
        warnings(&legacy)
            .iter()
            .any(|w| w.contains("istio-system/gw")),
        "{legacy:?}"
    );
}

#[test]
fn route_weights() {
    let neg = "{hosts: [reviews], http: [{route: [{destination: {host: a}, weight: 110}, {destination: {host: b}, weight: -10}]}]}";
    let diags = check(&spec(neg), &CTX);
    assert!(
        errors(&diags)
            .contains(&"spec.http[0].route[1].weight: must not be negative (got -10)".to_string()),
        "{diags:#?}"
    );
    run(&[
        ("weights ok", &http("route: [{destination: {host: a}, weight: 80}, {destination: {host: b}, weight: 20}]"), None),
        ("single unweighted", &http(ROUTE), None),
        ("all zero", &http("route: [{destination: {host: a}}, {destination: {host: b}, weight: 0}]"), Some("total weight of the destinations must be greater than 0")),
        ("missing destination", &http("route: [{weight: 100}]"), Some("destination is required")),
        ("destination *", &http("route: [{destination: {host: '*'}}]"), Some("destination host cannot be *")),
        ("bad subset", &http("route: [{destination: {host: a, subset: 'v_1'}}]"), Some("invalid subset name")),
        ("bad port", &http("route: [{destination: {host: a, port: {number: 70000}}}]"), Some("port number 70000")),
    ]);
}

#[test]
fn route_actions() {
    run(&[
        (
            "nothing",
            &http("name: x"),
            Some("HTTP route or redirect or directResponse or delegate is required"),
        ),
        (
            "route and redirect",
            &http(&format!("{ROUTE}, redirect: {{uri: /x}}")),
            Some("HTTP route cannot contain both route and redirect"),
        ),
        (
            "rewrite and redirect",
            &http("redirect: {uri: /x}, rewrite: {uri: /y}"),
            Some("both rewrite and redirect"),
        ),
        (
            "fault and direct",
            &http("directResponse: {status: 200}, fault: {abort: {httpStatus: 500}}"),
            Some("both fault and directResponse"),
        ),
        (
            "delegate and route",
            &http(&format!("{ROUTE}, delegate: {{name: d}}")),
            Some("with delegate cannot also have route"),
        ),
        (
            "delegate alone",
            &http("delegate: {name: d, namespace: ns}"),
            None,
        ),
        (
            "mirror and mirrors",
            &http(&format!(
                "{ROUTE}, mirror: {{host: m}}, mirrors: [{{destination: {{host: m}}}}]"
            )),
            Some("both mirror and mirrors"),
        ),
        (
            "mirrors",
            &http(&format!(
                "{ROUTE}, mirrors: [{{destination: {{host: m}}, percentage: {{value: 50}}}}]"
            )),
            None,
        ),
        (
            "mirror percentage",
            &http(&format!(
                "{ROUTE}, mirror: {{host: m}}, mirrorPercentage: {{value: 101}}"
            )),
            Some("between 0 and 100"),
        ),
        (
            "mirror without destination",
            &http(&format!("{ROUTE}, mirrors: [{{percentage: {{value: 5}}}}]")),
            Some("destination is required for mirrors"),
        ),
        (
            "old mirrorPercent",
            &http(&format!("{ROUTE}, mirror: {{host: m}}, mirrorPercent: 101")),
            Some("at most 100"),
        ),
        (
            "timeout sub-ms",
            &http(&format!("{ROUTE}, timeout: 1.0005s")),
            Some("finer than a millisecond"),
        ),
        (
            "timeout ok",
            &http(&format!("{ROUTE}, timeout: 1.5s")),
            None,
        ),
    ]);
}

#[test]
fn matches() {
    let m = |body: &str| http(&format!("match: [{{{body}}}], {ROUTE}"));
    run(&[
        ("uri prefix", &m("uri: {prefix: /api}"), None),
        ("uri empty prefix", &m("uri: {prefix: ''}"), None),
        (
            "uri two kinds",
            &m("uri: {prefix: /a, exact: /b}"),
            Some("only one of exact, prefix or regex"),
        ),
        ("uri regex ok", &m("uri: {regex: '/api/v[0-9]+/.*'}"), None),
        (
            "uri regex broken",
            &m("uri: {regex: '/api/(v1'}"),
            Some("invalid regex"),
        ),
        (
            "regex backreference",
            &m("uri: {regex: '(a)\\1'}"),
            Some("RE2"),
        ),
        ("regex lookahead", &m("uri: {regex: 'a(?=b)'}"), Some("RE2")),
        (
            "method empty prefix",
            &m("method: {prefix: ''}"),
            Some("prefix match cannot be empty"),
        ),
        (
            "authority empty regex",
            &m("authority: {regex: ''}"),
            Some("regex match cannot be empty"),
        ),
        ("header ok", &m("headers: {x-user: {exact: jason}}"), None),
        ("header presence", &m("headers: {x-user: {}}"), None),
        (
            "header bad name",
            &m("headers: {'x user': {exact: a}}"),
            Some("not a valid header name"),
        ),
        (
            "pseudo header",
            &m("headers: {':authority': {exact: a}}"),
            None,
        ),
        (
            "withoutHeaders star",
            &m("withoutHeaders: {x-a: {regex: '*'}}"),
            None,
        ),
        (
            "query regex",
            &m("queryParams: {q: {regex: '('}}"),
            Some("invalid regex"),
        ),
        ("port", &m("port: 0"), None),
        ("port range", &m("port: 70000"), Some("port number 70000")),
        ("source labels", &m("sourceLabels: {app: reviews}"), None),
        (
            "bad source labels",
            &m("sourceLabels: {'bad key!': v}"),
            Some("label key"),
        ),
        (
            "bad source namespace",
            &m("sourceNamespace: 'Not_A_NS'"),
            Some("sourceNamespace"),
        ),
        (
            "jwt claims on mesh",
            &m("headers: {'@request.auth.claims.group': {exact: admin}}"),
            Some("only supported on gateways"),
        ),
    ]);
    let gw = "{hosts: [a.example.com], gateways: [gw], http: [{match: [{headers: {'@request.auth.claims.group': {exact: admin}}, gateways: [gw]}], route: [{destination: {host: a}}]}]}";
    let diags = check(&spec(gw), &CTX);
    assert!(diags.is_empty(), "{diags:#?}");
    let stray = "{hosts: [a.example.com], gateways: [gw], http: [{match: [{gateways: [mesh]}], route: [{destination: {host: a}}]}]}";
    let diags = check(&spec(stray), &CTX);
    assert!(
        errors(&diags).is_empty() && warnings(&diags).iter().any(|w| w.contains("never applies")),
        "{diags:#?}"
    );
    // A delegate is bound wherever its root is, so its match gateways are not suspect.
    let delegate =
        "{http: [{match: [{gateways: [istio-system/gw]}], route: [{destination: {host: a}}]}]}";
    let diags = check(&spec(delegate), &CTX);
    assert!(diags.is_empty(), "{diags:#?}");
}

#[test]
fn headers_cors_fault() {
    let with_route = |body: &str| http(&format!("{ROUTE}, {body}"));
    run(&[
        ("header set", &with_route("headers: {request: {set: {x-a: b}}, response: {remove: [x-b]}}"), None),
        ("set authority", &with_route("headers: {request: {set: {':authority': b}}}"), None),
        ("authority twice", &with_route("rewrite: {authority: a}, headers: {request: {set: {host: b}}}"), Some("cannot be set multiple times")),
        ("remove host", &with_route("headers: {request: {remove: [Host]}}"), Some("cannot be modified")),
        ("response pseudo", &with_route("headers: {response: {set: {':status': '200'}}}"), Some("pseudo-headers")),
        ("header value var", &with_route("headers: {request: {set: {x-a: '%HOSTNAME% and 100%%'}}}"), None),
        ("header value args", &with_route("headers: {request: {set: {x-a: '%REQ(x-b)% %DYNAMIC_METADATA([\"a\", \"b\"])%'}}}"), None),
        ("header value stray %", &with_route("headers: {request: {set: {x-a: 'abc%123'}}}"), Some("unterminated")),
        ("destination headers", &http("route: [{destination: {host: a}, headers: {request: {remove: [':path']}}}]"), Some("pseudo-headers")),
        ("cors ok", &with_route("corsPolicy: {allowOrigins: [{exact: 'https://a.com'}], allowMethods: [GET, POST], allowHeaders: ['*'], maxAge: 24h}"), None),
        ("cors method", &with_route("corsPolicy: {allowMethods: [get]}"), Some("not a supported HTTP method")),
        ("cors empty origin", &with_route("corsPolicy: {allowOrigins: [{exact: ''}]}"), Some("non-empty exact")),
        ("cors origin regex", &with_route("corsPolicy: {allowOrigins: [{regex: '*.com'}]}"), Some("invalid regex")),
        ("cors header", &with_route("corsPolicy: {exposeHeaders: ['a b']}"), Some("not a valid header name")),
        ("cors max age", &with_route("corsPolicy: {maxAge: 1500ms}"), Some("whole seconds")),
        ("fault empty", &with_route("fault: {}"), Some("needs an abort and/or a delay")),
        ("abort ok", &with_route("fault: {abort: {httpStatus: 503, percentage: {value: 10}}}"), None),
        ("abort status", &with_route("fault: {abort: {httpStatus: 600}}"), Some("not in range 200-599")),
        ("abort grpc ok", &with_route("fault: {abort: {grpcStatus: UNAVAILABLE}}"), None),
        ("abort grpc", &with_route("fault: {abort: {grpcStatus: '14'}}"), Some("gRPC status")),
        ("abort http2", &with_route("fault: {abort: {http2Error: x}}"), Some("not supported")),
        ("abort percentage", &with_route("fault: {abort: {httpStatus: 500, percentage: {value: 120}}}"), Some("between 0.0001 and 100")),
        ("delay ok", &with_route("fault: {delay: {fixedDelay: 5s, percentage: {value: 0.1}}}"), None),
        ("delay exponential", &with_route("fault: {delay: {exponentialDelay: 5s}}"), Some("exponentialDelay is not supported")),
        ("delay percent", &with_route("fault: {delay: {fixedDelay: 1s, percent: 101}}"), Some("percent 101")),
    ]);
}

#[test]
fn redirect_direct_response_retries_rewrite() {
    run(&[
        ("redirect ok", &http("redirect: {uri: /v2, redirectCode: 308}"), None),
        ("redirect empty", &http("redirect: {}"), Some("redirect must specify")),
        ("redirect code", &http("redirect: {uri: /v2, redirectCode: 305}"), Some("redirect code 305")),
        ("redirect scheme", &http("redirect: {scheme: ftp}"), Some("invalid redirect scheme")),
        ("redirect port and derive", &http("redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}"), Some("one of port or derivePort")),
        ("redirect uri and prefix", &http("redirect: {uri: /a, prefixRewrite: /b}"), Some("one of uri or prefixRewrite")),
        ("prefix rewrite needs prefix", &http("match: [{uri: {exact: /a}}], redirect: {prefixRewrite: /b}"), Some("prefix match")),
        ("direct ok", &http("directResponse: {status: 503, body: {string: unavailable}}"), None),
        ("direct status", &http("directResponse: {status: 100}"), Some("not in range 200-599")),
        ("direct body both", &http("directResponse: {status: 200, body: {string: a, bytes: YQ==}}"), Some("only one of string or bytes")),
        ("retries ok", &http(&format!("{ROUTE}, retries: {{attempts: 3, perTryTimeout: 2s, retryOn: 'gateway-error,connect-failure,503,cancelled'}}")), None),
        ("retries negative", &http(&format!("{ROUTE}, retries: {{attempts: -1}}")), Some("cannot be negative")),
        ("retries disabled but configured", &http(&format!("{ROUTE}, retries: {{attempts: 0, retryOn: 5xx}}")), Some("attempts is 0")),
        ("retryOn unknown", &http(&format!("{ROUTE}, retries: {{attempts: 2, retryOn: '5xx,oops'}}")), Some("\"oops\" is not a valid retryOn policy")),
        ("retryOn space", &http(&format!("{ROUTE}, retries: {{attempts: 2, retryOn: '5xx, reset'}}")), Some("not a valid retryOn")),
        ("rewrite ok", &http(&format!("{ROUTE}, rewrite: {{uriRegexRewrite: {{match: '^/a/(.*)', rewrite: '/\\1'}}}}")), None),
        ("rewrite both", &http(&format!("{ROUTE}, rewrite: {{uri: /x, uriRegexRewrite: {{match: a, rewrite: b}}}}")), Some("one of uri or uriRegexRewrite")),
        ("rewrite empty", &http(&format!("{ROUTE}, rewrite: {{}}")), Some("at least one of uri")),
        ("rewrite half", &http(&format!("{ROUTE}, rewrite: {{uriRegexRewrite: {{match: a}}}}")), Some("both match and rewrite")),
        ("rewrite bad regex", &http(&format!("{ROUTE}, rewrite: {{uriRegexRewrite: {{match: '(?<=a)b', rewrite: c}}}}")), Some("RE2")),
    ]);
}

#[test]
fn tls_and_tcp_routes() {
    let tls = |hosts: &str, gws: &str, sni: &str| {
        format!("{{hosts: [{hosts}], gateways: [{gws}], tls: [{{match: [{{sniHosts: [{sni}]}}], route: [{{destination: {{host: a}}}}]}}]}}")
    };
    run(&[
        ("sni covered", &tls("'*.example.com'", "mesh", "a.example.com"), None),
        ("sni not covered", &tls("a.example.com", "mesh", "b.example.com"), Some("the SNI host \"b.example.com\" is not a match for any of the virtual service hosts")),
        ("sni wider than host", &tls("a.example.com", "mesh", "'*.example.com'"), Some("is not a match")),
        ("auto passthrough sni", &tls("'*.mesh'", "gw", "outbound_.80_._.e2e.foobar.mesh"), None),
        ("bad auto sni", &tls("'*.mesh'", "gw", "outbound_.x_._.e2e.foobar.mesh"), Some("port part")),
        ("no sni", "{hosts: [a.com], tls: [{match: [{port: 443}], route: [{destination: {host: a}}]}]}", Some("at least one SNI host")),
        ("no tls match", "{hosts: [a.com], tls: [{route: [{destination: {host: a}}]}]}", Some("at least one match")),
        ("no tls route", "{hosts: [a.com], tls: [{match: [{sniHosts: [a.com]}]}]}", Some("at least one destination")),
        ("tcp ok", "{hosts: [a.com], tcp: [{match: [{port: 3306, destinationSubnets: [10.0.0.0/8, 1.2.3.4]}], route: [{destination: {host: db}}]}]}", None),
        ("tcp subnet", "{hosts: [a.com], tcp: [{match: [{destinationSubnets: [10.0.0.0/33]}], route: [{destination: {host: db}}]}]}", Some("not a valid CIDR")),
        ("tcp no route", "{hosts: [a.com], tcp: [{match: [{port: 1}]}]}", Some("at least one destination")),
        ("tcp weights", "{hosts: [a.com], tcp: [{route: [{destination: {host: a}, weight: -1}, {destination: {host: b}, weight: 1}]}]}", Some("must not be negative (got -1)")),
    ]);
}

#[test]
fn export_to() {
    let case = |e: &str| format!("{{hosts: [a], exportTo: [{e}], http: [{{{ROUTE}}}]}}");
    run(&[
        ("dot", &case("."), None),
        ("namespaces", &case("a, b"), None),
        (
            "star alone",
            &case("'*', a"),
            Some("already means every namespace"),
        ),
        ("duplicate", &case("a, a"), Some("duplicate exportTo entry")),
        (
            "dot and own ns",
            &case("., default"),
            Some("duplicate exportTo"),
        ),
        ("tilde", &case("'~'"), Some("only allowed on ServiceEntry")),
        (
            "bad",
            &case("'a b'"),
            Some("must be ., *, or a namespace name"),
        ),
    ]);
}

#[test]
fn unreachable_rules_warn() {
    let y = "{hosts: [a], http: [{route: [{destination: {host: a}}]}, {match: [{uri: {prefix: /x}}], route: [{destination: {host: b}}]}]}";
    let diags = check(&spec(y), &CTX);
    assert!(errors(&diags).is_empty(), "{diags:#?}");
    assert!(
        warnings(&diags)
            .iter()
            .any(|w| w.starts_with("spec.http[1]") && w.contains("never used")),
        "{diags:#?}"
    );
    let dup = "{hosts: [a], http: [{match: [{uri: {prefix: /x}}], route: [{destination: {host: a}}]}, {name: again, match: [{name: m, uri: {prefix: /x}}], route: [{destination: {host: b}}]}]}";
    let w = warnings(&check(&spec(dup), &CTX));
    assert!(
        w.iter()
            .any(|w| w.contains("all its matches are used by earlier rules")),
        "{w:#?}"
    );
}
