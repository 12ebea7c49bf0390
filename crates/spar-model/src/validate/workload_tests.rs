use super::{check_entry, check_group};
use crate::istio::types::{WorkloadEntry, WorkloadGroup};
use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};

#[test]
fn workload_entry() {
    run_cases::<WorkloadEntry>(
        |s| check_entry(s, &CTX),
        &[
            (
                "ip",
                "{address: 10.0.0.1, labels: {app: a}, serviceAccount: sa, locality: us/east/1}",
                None,
            ),
            ("ipv6", "{address: '2001:db8::1'}", None),
            ("fqdn", "{address: vm1.example.com}", None),
            ("unix", "{address: 'unix:///var/run/app.sock'}", None),
            (
                "bad address",
                "{address: 'vm 1'}",
                Some("not a valid IP address, FQDN or unix:// path"),
            ),
            (
                "numeric tld",
                "{address: 10.0.0.300}",
                Some("not a valid IP address"),
            ),
            (
                "bad labels",
                "{address: 10.0.0.1, labels: {'a/b/c': x}}",
                Some("label key"),
            ),
        ],
    );
    let warned = |y: &str| warnings(&check_entry(&spec(y), &CTX));
    assert!(warned("{network: net1}")
        .iter()
        .any(|w| w.contains("network")));
    assert!(warned("{address: 1.2.3.4, serviceAccount: My_SA}")
        .iter()
        .any(|w| w.contains("serviceAccount")));
    assert!(warned("{address: 1.2.3.4, locality: a//b}")
        .iter()
        .any(|w| w.contains("locality")));
    assert!(warned("{address: 1.2.3.4, locality: a/b/c/d}")
        .iter()
        .any(|w| w.contains("locality")));
}

#[test]
fn workload_group() {
    run_cases::<WorkloadGroup>(
        |s| check_group(s, &CTX),
        &[
            ("minimal", "{template: {serviceAccount: sa}}", None),
            (
                "probe http",
                "{probe: {httpGet: {port: 8080, path: /ready}}, template: {}}",
                None,
            ),
            (
                "probe grpc",
                "{probe: {grpc: {port: 9090}}, template: {}}",
                None,
            ),
            (
                "probe none",
                "{probe: {periodSeconds: 5}, template: {}}",
                Some("probe needs one of"),
            ),
            (
                "probe two",
                "{probe: {tcpSocket: {port: 1}, exec: {command: [true]}}, template: {}}",
                Some("only one of"),
            ),
            (
                "metadata labels",
                "{metadata: {labels: {'bad key': v}}, template: {}}",
                Some("label key"),
            ),
            (
                "template labels",
                "{template: {labels: {app: '-x-'}}}",
                Some("label value"),
            ),
        ],
    );
    let d = check_group(
        &spec::<WorkloadGroup>("{template: {address: 1.2.3.4}}"),
        &CTX,
    );
    assert!(
        errors(&d).is_empty() && warnings(&d).iter().any(|w| w.contains("template address")),
        "{d:?}"
    );
}
