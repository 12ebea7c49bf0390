use super::super::peer_authentication::reference_tests::{expect, found, spec, CTX};
use super::*;

fn run(yaml: &str) -> Vec<Diagnostic> {
    check(&spec::<AuthorizationPolicy>(yaml), &CTX)
}

/// Each row: spec, error paths, warning paths.
type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);

fn table(cases: &[Case]) {
    for (yaml, errors, warnings) in cases {
        let d = run(yaml);
        assert_eq!(found(&d), expect(errors, warnings), "{yaml}\n{d:#?}");
    }
}

const R0: &str = "spec.rules[0]";

#[test]
fn actions_and_provider() {
    table(&[
        ("rules: [{from: [{source: {principals: [a]}}]}]", &[], &[]),
        ("action: CUSTOM", &["spec.rules", "spec.provider.name"], &[]),
        (
            "{action: CUSTOM, provider: {name: ext}, rules: [{}]}",
            &[],
            &[],
        ),
        (
            "{action: CUSTOM, rules: [{}]}",
            &["spec.provider.name"],
            &[],
        ),
        (
            "{action: CUSTOM, provider: {}, rules: [{}]}",
            &["spec.provider.name"],
            &[],
        ),
        (
            "{provider: {name: ext}, rules: [{}]}",
            &["spec.provider"],
            &[],
        ),
        (
            "{action: DENY, provider: {name: ext}, rules: [{}]}",
            &["spec.provider"],
            &[],
        ),
        ("action: DENY", &["spec.rules"], &[]),
        ("{action: DENY, rules: [{}]}", &[], &[]),
        ("action: AUDIT", &[], &[]),
        ("action: ALLOW", &[], &[]),
    ]);
}

#[test]
fn custom_refuses_identity_fields() {
    let base = "{action: CUSTOM, provider: {name: ext}, rules: [";
    let cases: &[(&str, &[&str])] = &[
        (
            "{from: [{source: {ipBlocks: [1.2.3.4], remoteIpBlocks: [1.2.3.4]}}]}",
            &[],
        ),
        (
            "{from: [{source: {principals: [a]}}]}",
            &["spec.rules[0].from[0].source.principals"],
        ),
        (
            "{from: [{source: {notRequestPrincipals: [a]}}]}",
            &["spec.rules[0].from[0].source.notRequestPrincipals"],
        ),
        (
            "{from: [{source: {serviceAccounts: [a]}}]}",
            &["spec.rules[0].from[0].source.serviceAccounts"],
        ),
        (
            "{from: [{source: {trustDomains: [a]}}]}",
            &["spec.rules[0].from[0].source.trustDomains"],
        ),
        (
            "{from: [{source: {notNamespaces: [a]}}]}",
            &["spec.rules[0].from[0].source.notNamespaces"],
        ),
        (
            "{when: [{key: source.principal, values: [a]}]}",
            &["spec.rules[0].when[0].key"],
        ),
        (
            "{when: [{key: source.serviceAccount, values: [a]}]}",
            &["spec.rules[0].when[0].key"],
        ),
        (
            "{when: [{key: 'request.auth.claims[iss]', values: [a]}]}",
            &["spec.rules[0].when[0].key"],
        ),
        ("{when: [{key: source.ip, values: [1.2.3.4]}]}", &[]),
        ("{when: [{key: 'request.headers[x-a]', values: [a]}]}", &[]),
    ];
    for (rule, errors) in cases {
        let yaml = format!("{base}{rule}]}}");
        let d = run(&yaml);
        assert_eq!(found(&d), expect(errors, &[]), "{yaml}\n{d:#?}");
    }
}

#[test]
fn empty_entries() {
    table(&[
        ("rules: [{from: [{}]}]", &["spec.rules[0].from[0]"], &[]),
        (
            "rules: [{from: [{source: {}}]}]",
            &["spec.rules[0].from[0].source"],
            &[],
        ),
        ("rules: [{to: [{}]}]", &["spec.rules[0].to[0]"], &[]),
        (
            "rules: [{to: [{operation: {}}]}]",
            &["spec.rules[0].to[0].operation"],
            &[],
        ),
        ("rules: [{to: [{operation: {notPorts: ['1']}}]}]", &[], &[]),
    ]);
}

/// Rows for one source or operation field: `(values, error indexes, warning indexes)`.
fn field_table(template: &str, field: &str, rows: &[(&str, &[usize], &[usize])]) {
    for (values, errors, warnings) in rows {
        let yaml = template.replace("FIELD", field).replace("VALUES", values);
        let base = if template.contains("source") {
            "spec.rules[0].from[0].source"
        } else {
            "spec.rules[0].to[0].operation"
        };
        let errs: Vec<String> = errors
            .iter()
            .map(|i| format!("{base}.{field}[{i}]"))
            .collect();
        let warns: Vec<String> = warnings
            .iter()
            .map(|i| format!("{base}.{field}[{i}]"))
            .collect();
        let errs: Vec<&str> = errs.iter().map(String::as_str).collect();
        let warns: Vec<&str> = warns.iter().map(String::as_str).collect();
        let d = run(&yaml);
        assert_eq!(found(&d), expect(&errs, &warns), "{yaml}\n{d:#?}");
    }
}

const SOURCE: &str = "rules: [{from: [{source: {FIELD: VALUES, ipBlocks: [1.1.1.1]}}], to: [{operation: {ports: ['1']}}]}]";
const OPERATION: &str = "rules: [{to: [{operation: {FIELD: VALUES, ports: ['1']}}]}]";

#[test]
fn match_values() {
    let rows: &[(&str, &[usize], &[usize])] = &[
        ("[a, 'a*', '*a', '*', 'spiffe://x/ns/a/sa/*']", &[], &[]),
        ("['']", &[0], &[]),
        ("[ok, 'a*b', '*a*', '**']", &[], &[1, 2, 3]),
    ];
    for field in [
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
    ] {
        field_table(SOURCE, field, rows);
    }
    for field in ["hosts", "notHosts"] {
        field_table(OPERATION, field, rows);
    }
}

#[test]
fn trust_domains() {
    let rows: &[(&str, &[usize], &[usize])] = &[
        ("[cluster.local, 'td-*', '*-td', '*']", &[], &[]),
        ("['', 'a*b', '*a*', 'td/ns/x', ok]", &[0, 1, 2, 3], &[]),
    ];
    field_table(SOURCE, "trustDomains", rows);
    field_table(SOURCE, "notTrustDomains", rows);
}

#[test]
fn ip_blocks() {
    let rows: &[(&str, &[usize], &[usize])] = &[
        (
            "[1.2.3.4, 10.0.0.0/8, '::1', 'fe80::/10', 10.1.2.3/8]",
            &[],
            &[],
        ),
        (
            "['', 1.2.3, 10.0.0.0/33, '*', 'a.b.c.d', '01.2.3.4']",
            &[0, 1, 2, 3, 4, 5],
            &[],
        ),
    ];
    for field in ["notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"] {
        field_table(SOURCE, field, rows);
    }
}

#[test]
fn service_accounts() {
    let rows: &[(&str, &[usize], &[usize])] = &[
        ("[ns/sa, sa]", &[], &[]),
        (
            "['', '*', 'ns/*', a/b/c, /sa, 'ns/', ok]",
            &[0, 1, 2, 3, 4, 5],
            &[],
        ),
    ];
    for field in ["serviceAccounts", "notServiceAccounts"] {
        field_table(SOURCE, field, rows);
    }
}

#[test]
fn ports() {
    let yaml = |field: &str, values: &str| {
        format!("rules: [{{to: [{{operation: {{{field}: {values}}}}}]}}]")
    };
    for field in ["ports", "notPorts"] {
        let p = |i: usize| format!("spec.rules[0].to[0].operation.{field}[{i}]");
        let d = run(&yaml(field, "['1', '80', '65535', '00080']"));
        assert_eq!(found(&d), expect(&[], &[]), "{d:#?}");
        let d = run(&yaml(field, "['', '65536', http, '+80', ' 80', '-1', '0']"));
        let errs: Vec<String> = (0..6).map(p).collect();
        let errs: Vec<&str> = errs.iter().map(String::as_str).collect();
        assert_eq!(found(&d), expect(&errs, &[&p(6)]), "{d:#?}");
    }
}

#[test]
fn methods() {
    let rows: &[(&str, &[usize], &[usize])] = &[
        ("[GET, POST, 'PU*', '*']", &[], &[]),
        ("['', get, 'G*T', purge, Get]", &[0], &[1, 2, 4]),
    ];
    field_table(OPERATION, "methods", rows);
    field_table(OPERATION, "notMethods", rows);
}

#[test]
fn paths() {
    let long = format!("['/{}/{{*}}']", "a".repeat(300));
    let rows: Vec<(&str, &[usize], &[usize])> = vec![
        ("[/exact, '/prefix/*', '*/suffix', '*', '/a/{*}/b', '/{**}/x/y', '/a/{*}/{**}', '/{**}']", &[], &[]),
        ("['', '/a/{**}/{*}', '/a/{**}/{**}', 'a/{*}', '/a/{x}', '/a/b*/{*}', '/a//{*}', '/a{*}', '/x/{y']", &[0, 1, 2, 3, 4, 5, 6, 7, 8], &[]),
        ("['/api/*/x', '/a*b*', api]", &[], &[0, 1, 2]),
        ("['/a/%20/{*}', \"/a/b!$&'()+,;:@=~._-/{*}\"]", &[], &[]),
        (&long, &[0], &[]),
    ];
    field_table(OPERATION, "paths", &rows);
    field_table(OPERATION, "notPaths", &rows);
}

#[test]
fn conditions() {
    let when = |cond: &str| format!("rules: [{{when: [{cond}]}}]");
    let key = "spec.rules[0].when[0].key";
    let w0 = "spec.rules[0].when[0]";
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "{key: 'request.headers[x-user]', values: [a, 'b*']}",
            &[],
            &[],
        ),
        (
            "{key: 'request.headers[:authority]', values: [a]}",
            &[],
            &[],
        ),
        ("{key: 'request.headers[x y]', values: [a]}", &[], &[key]),
        ("{key: 'request.headers[]', values: [a]}", &[key], &[]),
        ("{key: 'request.headers[a][b]', values: [a]}", &[key], &[]),
        ("{key: 'request.headers', values: [a]}", &[key], &[]),
        ("{key: 'request.headersX[a]', values: [a]}", &[key], &[]),
        ("{key: 'request.auth.claims[iss]', values: [a]}", &[], &[]),
        (
            "{key: 'request.auth.claims[a][b][c]', values: [a]}",
            &[],
            &[],
        ),
        ("{key: 'request.auth.claims[]', values: [a]}", &[key], &[]),
        ("{key: 'request.auth.claims[a]b', values: [a]}", &[key], &[]),
        ("{key: 'request.auth.claims', values: [a]}", &[key], &[]),
        (
            "{key: 'experimental.envoy.filters.a.b[c]', values: [a]}",
            &[],
            &[],
        ),
        (
            "{key: 'experimental.envoy.filters.a', values: [a]}",
            &[key],
            &[],
        ),
        ("{key: destination.namespace, values: [a]}", &[key], &[]),
        ("{key: 'destination.labels[v]', values: [a]}", &[key], &[]),
        ("{key: destination.name, values: [a]}", &[key], &[]),
        ("{key: destination.user, values: [a]}", &[key], &[]),
        ("{key: source.user, values: [a]}", &[key], &[]),
        ("{key: '', values: [a]}", &[key], &[]),
        ("{key: source.ip}", &[w0], &[]),
        (
            "{key: source.ip, values: [1.2.3.4, 10.0.0.0/8], notValues: ['::1']}",
            &[],
            &[],
        ),
        (
            "{key: remote.ip, values: [x]}",
            &["spec.rules[0].when[0].values[0]"],
            &[],
        ),
        (
            "{key: destination.ip, notValues: [ok, 1.1.1.1]}",
            &["spec.rules[0].when[0].notValues[0]"],
            &[],
        ),
        (
            "{key: destination.port, values: ['80'], notValues: [http]}",
            &["spec.rules[0].when[0].notValues[0]"],
            &[],
        ),
        (
            "{key: source.namespace, values: ['', 'a*b']}",
            &["spec.rules[0].when[0].values[0]"],
            &["spec.rules[0].when[0].values[1]"],
        ),
        (
            "{key: source.serviceAccount, values: [ns/sa, '*']}",
            &["spec.rules[0].when[0].values[1]"],
            &[],
        ),
        (
            "{key: source.trustDomain, values: ['a*', 'a*b']}",
            &["spec.rules[0].when[0].values[1]"],
            &[],
        ),
        ("{key: connection.sni, values: ['*.example.com']}", &[], &[]),
        ("{key: request.auth.audiences, notValues: [a]}", &[], &[]),
        ("{key: request.auth.presenter, values: [a]}", &[], &[]),
        (
            "{key: request.auth.principal, values: ['https://example.com/*']}",
            &[],
            &[],
        ),
    ];
    for (cond, errors, warnings) in cases {
        let d = run(&when(cond));
        assert_eq!(found(&d), expect(errors, warnings), "{cond}\n{d:#?}");
    }
    let d = run(&when("{key: source.user, values: [a]}"));
    assert!(
        d[0].message.contains("request.auth.claims[<name>]") && d[0].message.contains("source.ip"),
        "{d:#?}"
    );
}

#[test]
fn deny_with_only_http_attributes_warns() {
    let deny = |rule: &str| format!("{{action: DENY, rules: [{rule}]}}");
    let cases: &[(&str, &[&str])] = &[
        ("{to: [{operation: {paths: [/x]}}]}", &[R0]),
        ("{to: [{operation: {paths: [/x], ports: ['80']}}]}", &[]),
        ("{from: [{source: {requestPrincipals: ['*']}}]}", &[R0]),
        ("{from: [{source: {principals: ['*']}}]}", &[]),
        ("{from: [{source: {notIpBlocks: [1.1.1.1]}}]}", &[]),
        (
            "{from: [{source: {principals: ['*']}}], to: [{operation: {methods: [GET]}}]}",
            &[R0],
        ),
        ("{when: [{key: 'request.headers[a]', values: [b]}]}", &[]),
    ];
    for (rule, warnings) in cases {
        let d = run(&deny(rule));
        assert_eq!(found(&d), expect(&[], warnings), "{rule}\n{d:#?}");
        let allow = run(&format!("rules: [{rule}]"));
        assert!(allow.is_empty(), "ALLOW {rule}: {allow:#?}");
    }
}

#[test]
fn selector_and_target_refs() {
    table(&[
        ("selector: {matchLabels: {app: a}}", &[], &[]),
        ("selector: {}", &[], &["spec.selector"]),
        (
            "targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}",
            &[],
            &[],
        ),
        (
            "targetRef: {kind: Gateway, group: networking.istio.io, name: g}",
            &["spec.targetRef"],
            &[],
        ),
        (
            "targetRefs: [{kind: Service, group: '', name: s}, {kind: Pod, name: p}]",
            &["spec.targetRefs[1]"],
            &[],
        ),
    ]);
}
