use super::check;
use crate::istio::types::Sidecar;
use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};

fn run(cases: &[(&str, &str, Option<&str>)]) {
    run_cases::<Sidecar>(|s| check(s, &CTX), cases);
}

#[test]
fn egress() {
    run(&[
        ("default", "{egress: [{hosts: ['./*', 'istio-system/*']}]}", None),
        ("empty", "{}", Some("at least one of egress")),
        ("no hosts", "{egress: [{hosts: []}]}", Some("at least one host")),
        ("host without namespace", "{egress: [{hosts: [reviews.default.svc.cluster.local]}]}", Some("namespace/dnsName")),
        ("short host", "{egress: [{hosts: [default/reviews]}]}", Some("short name")),
        ("excluded namespace", "{egress: [{hosts: ['~/*']}]}", None),
        ("bad namespace", "{egress: [{hosts: ['Bad_NS/*']}]}", Some("namespace")),
        ("port then catch-all", "{egress: [{port: {number: 9080, protocol: HTTP, name: http}, hosts: ['./*']}, {hosts: ['./*']}]}", None),
        ("catch-all first", "{egress: [{hosts: ['./*']}, {port: {number: 9080}, hosts: ['./*']}]}", Some("must be the last one")),
        ("two catch-alls", "{egress: [{hosts: ['./*']}, {hosts: ['*/*']}]}", Some("only one egress listener may omit the port")),
        ("duplicate port", "{egress: [{port: {number: 80}, hosts: ['./*']}, {port: {number: 80}, hosts: ['*/*']}]}", Some("already used by another egress listener")),
        ("port range", "{egress: [{port: {number: 70000}, hosts: ['./*']}]}", Some("port number 70000")),
        ("bad protocol", "{egress: [{port: {number: 80, protocol: SMTP}, hosts: ['./*']}]}", Some("unsupported protocol")),
        ("bad port name", "{egress: [{port: {number: 80, name: 'a_b'}, hosts: ['./*']}]}", Some("invalid port name")),
        ("target port", "{egress: [{port: {number: 80, targetPort: 8080}, hosts: ['./*']}]}", Some("targetPort has no effect")),
        ("bind ip", "{egress: [{port: {number: 80}, bind: 127.0.0.2, hosts: ['./*']}]}", None),
        ("bind bad", "{egress: [{port: {number: 80}, bind: 'unix:///a.sock', hosts: ['./*']}]}", Some("not a valid IP")),
        ("uds", "{egress: [{port: {number: 0, protocol: HTTP}, bind: 'unix:///var/run/a.sock', captureMode: NONE, hosts: ['./*']}]}", None),
        ("uds no bind", "{egress: [{port: {number: 0}, hosts: ['./*']}]}", Some("needs a unix domain socket bind")),
        ("uds iptables", "{egress: [{port: {number: 0}, bind: 'unix:///a.sock', captureMode: IPTABLES, hosts: ['./*']}]}", Some("captureMode must be DEFAULT or NONE")),
        ("uds twice", "{egress: [{port: {number: 0}, bind: 'unix:///a.sock', hosts: ['./*']}, {port: {number: 0}, bind: 'unix:///a.sock', hosts: ['./*']}]}", Some("already used")),
    ]);
    let w = warnings(&check(
        &spec::<Sidecar>("{egress: [{hosts: ['*/*', 'ns1/a.example.com', 'ns1/a.example.com']}]}"),
        &CTX,
    ));
    assert!(
        w.iter().any(|w| w.contains("already covered"))
            && w.iter().any(|w| w.contains("*/* already imports")),
        "{w:?}"
    );
}

#[test]
fn ingress() {
    let ing = |s: &str| format!("{{ingress: [{{{s}}}]}}");
    run(&[
        ("basic", &ing("port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: 127.0.0.1:8080"), None),
        ("ipv6 endpoint", &ing("port: {number: 9080}, defaultEndpoint: '[::1]:8080'"), None),
        ("any endpoint", &ing("port: {number: 9080}, defaultEndpoint: ':8080'"), None),
        ("unix endpoint", &ing("port: {number: 9080}, defaultEndpoint: 'unix:///var/run/app.sock'"), None),
        ("remote endpoint", &ing("port: {number: 9080}, defaultEndpoint: 10.0.0.1:8080"), Some("defaultEndpoint must be")),
        ("endpoint port", &ing("port: {number: 9080}, defaultEndpoint: 127.0.0.1:http"), Some("is not a number")),
        ("endpoint port range", &ing("port: {number: 9080}, defaultEndpoint: 127.0.0.1:0"), Some("range 1..65535")),
        ("port range", &ing("port: {number: 0}"), Some("port number 0")),
        ("duplicate ports", "{ingress: [{port: {number: 80}}, {port: {number: 80}}]}", Some("already used by another ingress listener")),
        ("bind", &ing("port: {number: 80}, bind: 0.0.0.0"), None),
        ("bad bind", &ing("port: {number: 80}, bind: any"), Some("not a valid IP")),
        ("tls", &ing("port: {number: 8443, protocol: HTTPS}, tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}"), None),
        ("tls on http", &ing("port: {number: 8080, protocol: HTTP}, tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}"), Some("only HTTPS or TLS ingress ports")),
        ("tls credential", &ing("port: {number: 8443, protocol: HTTPS}, tls: {mode: SIMPLE, credentialName: c}"), Some("credentialName is not supported")),
        ("tls istio mutual", &ing("port: {number: 8443, protocol: HTTPS}, tls: {mode: ISTIO_MUTUAL}"), Some("cannot be used in Sidecar ingress")),
        ("tls missing key", &ing("port: {number: 8443, protocol: HTTPS}, tls: {mode: SIMPLE, serverCertificate: /c.pem}"), Some("requires privateKey")),
        ("pool", &ing("port: {number: 80, protocol: HTTP}, connectionPool: {http: {maxRetries: -1}}"), Some("must not be negative")),
        ("inbound pool", "{inboundConnectionPool: {tcp: {maxConnections: 10}}}", None),
        ("inbound pool empty", "{inboundConnectionPool: {}}", Some("http or tcp")),
    ]);
    let w = warnings(&check(
        &spec::<Sidecar>(&ing(
            "port: {number: 3306, protocol: TCP}, connectionPool: {http: {maxRetries: 1}}",
        )),
        &CTX,
    ));
    assert!(
        w.iter().any(|w| w.contains("only the tcp settings apply")),
        "{w:?}"
    );
}

#[test]
fn outbound_policy_and_selector() {
    run(&[
        ("registry only", "{outboundTrafficPolicy: {mode: REGISTRY_ONLY}}", None),
        ("egress proxy", "{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com, port: {number: 3128}, subset: v1}}}", None),
        ("egress proxy registry only", "{outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: proxy.example.com, port: {number: 3128}}}}", Some("only be set with mode ALLOW_ANY")),
        ("egress proxy no port", "{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com}}}", Some("needs a port")),
        ("egress proxy wildcard", "{outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: '*.example.com', port: {number: 1}}}}", Some("egressProxy host")),
        ("selector", "{workloadSelector: {labels: {app: a}}, egress: [{hosts: ['./*']}]}", None),
        ("bad selector", "{workloadSelector: {labels: {app: 'a b'}}, egress: [{hosts: ['./*']}]}", Some("label value")),
    ]);
    let d = check(
        &spec::<Sidecar>("{workloadSelector: {}, egress: [{hosts: ['./*']}]}"),
        &CTX,
    );
    assert!(
        errors(&d).is_empty() && warnings(&d).iter().any(|w| w.contains("no labels")),
        "{d:?}"
    );
}
