use super::check;
use crate::istio::types::Gateway;
use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};
use crate::validate::Ctx;

fn run(cases: &[(&str, &str, Option<&str>)]) {
    run_cases::<Gateway>(|s| check(s, &CTX), cases);
}

fn server(s: &str) -> String {
    format!("{{selector: {{istio: ingressgateway}}, servers: [{{{s}}}]}}")
}

const HTTP_PORT: &str = "port: {number: 80, name: http, protocol: HTTP}";
const HTTPS_PORT: &str = "port: {number: 443, name: https, protocol: HTTPS}";

#[test]
fn servers_hosts_ports() {
    run(&[
        ("http", &server(&format!("{HTTP_PORT}, hosts: ['*']")), None),
        ("no servers", "{servers: []}", Some("at least one server")),
        ("no hosts", &server(&format!("{HTTP_PORT}, hosts: []")), Some("at least one host")),
        ("namespaced host", &server(&format!("{HTTP_PORT}, hosts: [prod/bookinfo.example.com, './*.example.com']")), None),
        ("short host", &server(&format!("{HTTP_PORT}, hosts: [bookinfo]")), Some("short name")),
        ("partial wildcard", &server(&format!("{HTTP_PORT}, hosts: ['*bookinfo.com']")), Some("partial wildcard")),
        ("bad namespace", &server(&format!("{HTTP_PORT}, hosts: ['Prod_1/a.com']")), Some("namespace")),
        ("ip host", &server(&format!("{HTTP_PORT}, hosts: [10.1.2.3]")), None),
        ("lowercase protocol", &server("port: {number: 80, name: http, protocol: http2}, hosts: ['*']"), None),
        ("bad protocol", &server("port: {number: 80, name: http, protocol: QUIC}, hosts: ['*']"), Some("invalid protocol \"QUIC\"")),
        ("port zero", &server("port: {number: 0, name: http, protocol: HTTP}, hosts: ['*']"), Some("port number 0")),
        ("target port", &server("port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}, hosts: ['*']"), Some("targetPort has no effect")),
        ("empty port name", &server("port: {number: 80, name: '', protocol: HTTP}, hosts: ['*']"), Some("port name must be set")),
        ("bind ip", &server(&format!("{HTTP_PORT}, hosts: ['*'], bind: 127.0.0.1")), None),
        ("bind bad", &server(&format!("{HTTP_PORT}, hosts: ['*'], bind: localhost")), Some("not a valid IP")),
        ("bind unix", &server("port: {number: 0, name: uds, protocol: HTTP}, hosts: ['*'], bind: 'unix:///var/run/gw.sock'"), None),
        ("bind unix with port", &server("port: {number: 80, name: uds, protocol: HTTP}, hosts: ['*'], bind: 'unix:///var/run/gw.sock'"), Some("must be 0")),
        ("bind unix dir", &server("port: {number: 0, name: uds, protocol: HTTP}, hosts: ['*'], bind: 'unix:///var/run/'"), Some("absolute path to a file")),
        ("duplicate port names", "{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}, {port: {number: 81, name: http, protocol: HTTP}, hosts: ['*']}]}", Some("port names in servers must be unique")),
        ("bad selector", "{selector: {'bad key': x}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}", Some("label key")),
    ]);
    let named = |name: &'static str| Ctx {
        namespace: "default",
        name,
    };
    let g: Gateway = spec(&server(&format!("{HTTP_PORT}, hosts: ['*']")));
    assert!(errors(&check(&g, &named("bookinfo-gateway"))).is_empty());
    assert!(errors(&check(&g, &named("bookinfo.gateway")))
        .iter()
        .any(|e| e.starts_with("metadata.name")));
}

#[test]
fn server_tls() {
    let https = |tls: &str| {
        server(&format!(
            "{HTTPS_PORT}, hosts: ['*.example.com'], tls: {{{tls}}}"
        ))
    };
    run(&[
        ("https no tls", &server(&format!("{HTTPS_PORT}, hosts: ['*']")), Some("need tls settings")),
        ("tls no tls", &server("port: {number: 443, name: tls, protocol: TLS}, hosts: ['*']"), Some("need tls settings")),
        ("simple credential", &https("mode: SIMPLE, credentialName: bookinfo-cert"), None),
        ("simple files", &https("mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem"), None),
        ("simple missing key", &https("mode: SIMPLE, serverCertificate: /c.pem"), Some("SIMPLE TLS requires privateKey")),
        ("simple nothing", &https("mode: SIMPLE"), Some("requires serverCertificate")),
        ("simple two sources", &https("mode: SIMPLE, credentialName: c, serverCertificate: /c.pem, privateKey: /k.pem"), Some("only one certificate source")),
        ("mutual files no ca", &https("mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem"), Some("client CA bundle")),
        ("mutual credential", &https("mode: MUTUAL, credentialName: c"), None),
        ("tls certificates", &https("mode: SIMPLE, tlsCertificates: [{serverCertificate: /c.pem}]"), Some("requires privateKey")),
        ("istio mutual with cert", &https("mode: ISTIO_MUTUAL, credentialName: c"), Some("remove credentialName")),
        ("passthrough", &server("port: {number: 443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: PASSTHROUGH}"), None),
        ("crl with simple", &https("mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, caCrl: /crl.pem"), Some("caCrl has no effect")),
        ("http redirect", &server(&format!("{HTTP_PORT}, hosts: ['*'], tls: {{httpsRedirect: true}}")), None),
        ("http terminating", &server(&format!("{HTTP_PORT}, hosts: ['*'], tls: {{mode: SIMPLE, credentialName: c}}")), Some("plain-text HTTP server")),
        ("tcp with tls", &server("port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}"), Some("can have tls settings")),
    ]);
    let warned = |y: &str| warnings(&check(&spec::<Gateway>(y), &CTX));
    assert!(warned(&https("mode: SIMPLE, credentialName: c, cipherSuites: [NOT-A-CIPHER, ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256]")).len() == 2);
    assert!(warned(&https(
        "mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_1"
    ))
    .iter()
    .any(|w| w.contains("below 1.2")));
    assert!(warned(&server("port: {number: 443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: PASSTHROUGH, httpsRedirect: true, credentialName: c}")).len() == 2);
}
