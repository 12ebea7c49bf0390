use super::check;
use crate::istio::types::ServiceEntry;
use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};

fn run(cases: &[(&str, &str, Option<&str>)]) {
    run_cases::<ServiceEntry>(|s| check(s, &CTX), cases);
}

#[test]
fn hosts_addresses_ports() {
    run(&[
        ("plain", "{hosts: [api.example.com], ports: [{number: 443, name: https, protocol: TLS}], resolution: DNS}", None),
        ("no hosts", "{hosts: []}", Some("at least one host")),
        ("bad host", "{hosts: ['api..example.com']}", Some("invalid")),
        ("addresses", "{hosts: [a.com], addresses: [10.0.0.1, 10.1.0.0/16, '2001:db8::/32']}", None),
        ("bad address", "{hosts: [a.com], addresses: [10.0.0.256]}", Some("not a valid IP")),
        ("bad cidr", "{hosts: [a.com], addresses: [1.2.3.4/99]}", Some("not a valid CIDR")),
        ("duplicate port name", "{hosts: [a.com], ports: [{number: 1, name: a}, {number: 2, name: a}]}", Some("port name \"a\" is already defined")),
        ("bad port name", "{hosts: [a.com], ports: [{number: 1, name: 'http_1'}]}", Some("invalid port name")),
        ("bad protocol", "{hosts: [a.com], ports: [{number: 1, name: a, protocol: SCTP}]}", Some("unsupported protocol \"SCTP\"")),
        ("empty san", "{hosts: [a.com], subjectAltNames: ['']}", Some("cannot be empty")),
        ("export none", "{hosts: [a.com], exportTo: ['~']}", None),
        ("export none and more", "{hosts: [a.com], exportTo: ['~', .]}", Some("cannot be combined")),
        ("multi host tcp", "{hosts: [a.com, b.com], ports: [{number: 3306, name: tcp, protocol: TCP}], resolution: DNS}", Some("multiple hosts need HTTP or TLS ports")),
        ("multi host http", "{hosts: [a.com, b.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}", None),
        ("multi host none", "{hosts: [a.com, b.com], ports: [{number: 3306, name: tcp, protocol: TCP}]}", None),
    ]);
    let w = warnings(&check(&spec::<ServiceEntry>("{hosts: ['*x.com']}"), &CTX));
    assert!(w.iter().any(|w| w.contains("partial wildcard")), "{w:?}");
}

#[test]
fn resolution_and_endpoints() {
    run(&[
        ("dns wildcard no endpoints", "{hosts: ['*.example.com'], resolution: DNS}", Some("must be a plain FQDN")),
        ("dns wildcard with endpoint", "{hosts: ['*.example.com'], resolution: DNS, endpoints: [{address: lb.example.com}]}", None),
        ("dns endpoint", "{hosts: [a.com], ports: [{number: 80, name: http}], resolution: DNS, endpoints: [{address: 1.2.3.4, ports: {http: 8080}}]}", None),
        ("dns bad endpoint", "{hosts: [a.com], resolution: DNS, endpoints: [{address: 'not valid'}]}", Some("not a valid FQDN or an IP address")),
        ("static ip", "{hosts: [a.com], resolution: STATIC, endpoints: [{address: 10.0.0.1, labels: {app: a}}]}", None),
        ("static fqdn", "{hosts: [a.com], resolution: STATIC, endpoints: [{address: a.example.com}]}", Some("STATIC resolution needs IPs")),
        ("undeclared endpoint port", "{hosts: [a.com], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 10.0.0.1, ports: {grpc: 9090}}]}", Some("endpoint port \"grpc\" (9090) is not defined by the service entry")),
        ("endpoint labels", "{hosts: [a.com], resolution: STATIC, endpoints: [{address: 10.0.0.1, labels: {app: '-a'}}]}", Some("label value")),
        ("unix one port", "{hosts: [a.com], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 'unix:///var/run/a.sock'}]}", None),
        ("unix two ports", "{hosts: [a.com], ports: [{number: 80, name: http}, {number: 81, name: h2}], resolution: STATIC, endpoints: [{address: 'unix:///var/run/a.sock'}]}", Some("exactly one port")),
        ("dynamic dns", "{hosts: ['*.example.com'], location: MESH_EXTERNAL, ports: [{number: 443, name: tls, protocol: TLS}], resolution: DYNAMIC_DNS}", None),
        ("dynamic dns plain host", "{hosts: [a.example.com], location: MESH_EXTERNAL, resolution: DYNAMIC_DNS}", Some("must be a wildcard")),
        ("dynamic dns tcp", "{hosts: ['*.a.com'], location: MESH_EXTERNAL, ports: [{number: 1, name: t, protocol: TCP}], resolution: DYNAMIC_DNS}", Some("supports only HTTP")),
        ("dynamic dns location", "{hosts: ['*.a.com'], resolution: DYNAMIC_DNS}", Some("needs location")),
        ("dynamic dns addresses", "{hosts: ['*.a.com'], location: MESH_EXTERNAL, addresses: [1.1.1.1], resolution: DYNAMIC_DNS}", Some("addresses cannot be set")),
    ]);
    let d = check(
        &spec::<ServiceEntry>("{hosts: [a.com], workloadSelector: {labels: {app: a}}}"),
        &CTX,
    );
    assert!(
        errors(&d).is_empty() && warnings(&d).iter().any(|w| w.contains("resolution NONE")),
        "{d:?}"
    );
}
