use super::check;
use crate::istio::types::DestinationRule;
use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};

fn run(cases: &[(&str, &str, Option<&str>)]) {
    run_cases::<DestinationRule>(|s| check(s, &CTX), cases);
}

fn policy(tp: &str) -> String {
    format!("{{host: reviews, trafficPolicy: {{{tp}}}}}")
}

#[test]
fn host_subsets_export() {
    run(&[
        ("short host", "{host: reviews}", None),
        ("wildcard host", "{host: '*.example.com'}", None),
        ("bad host", "{host: 'foo*.com'}", Some("invalid")),
        ("empty host", "{host: ''}", Some("empty domain name")),
        ("subsets", "{host: r, subsets: [{name: v1, labels: {version: v1}}, {name: v2}]}", None),
        ("duplicate subset", "{host: r, subsets: [{name: v1}, {name: v1}]}", Some("duplicate subset name")),
        ("bad subset name", "{host: r, subsets: [{name: V1.0}]}", Some("invalid subset name")),
        ("bad subset labels", "{host: r, subsets: [{name: v1, labels: {version: '-v1'}}]}", Some("label value")),
        ("export", "{host: r, exportTo: [., other]}", None),
        ("export dup", "{host: r, exportTo: [other, other]}", Some("duplicate exportTo entry")),
        ("selector local", "{host: r, workloadSelector: {matchLabels: {app: a}}, exportTo: [.]}", None),
        ("selector exported", "{host: r, workloadSelector: {matchLabels: {app: a}}, exportTo: ['*']}", Some("only be exported to its own namespace")),
        ("selector two", "{host: r, workloadSelector: {matchLabels: {app: a}}, exportTo: [., other]}", Some("own namespace")),
        ("subset policy", "{host: r, subsets: [{name: v1, trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}}]}", Some("only one of simple or consistentHash")),
    ]);
    let w = warnings(&check(
        &spec::<DestinationRule>("{host: r, workloadSelector: {}}"),
        &CTX,
    ));
    assert!(w.iter().any(|w| w.contains("no labels")), "{w:?}");
}

#[test]
fn traffic_policy_shape() {
    run(&[
        ("empty policy", &policy(""), Some("at least one field")),
        ("tunnel and proxy protocol", &policy("tunnel: {targetHost: a.com, targetPort: 80}, proxyProtocol: {version: V1}"), Some("cannot be set together")),
        ("tunnel ok", &policy("tunnel: {protocol: CONNECT, targetHost: 10.0.0.1, targetPort: 8080}"), None),
        ("tunnel protocol", &policy("tunnel: {protocol: GET, targetHost: a.com, targetPort: 80}"), Some("CONNECT or POST")),
        ("tunnel host", &policy("tunnel: {targetHost: 'a_b', targetPort: 80}"), Some("targetHost")),
        ("tunnel port", &policy("tunnel: {targetHost: a.com}"), Some("port number 0")),
        ("port settings", &policy("portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE}}, {port: {number: 81}, loadBalancer: {simple: RANDOM}}]"), None),
        ("port missing", &policy("portLevelSettings: [{tls: {mode: SIMPLE}}]"), Some("needs a port")),
        ("port duplicate", &policy("portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE}}, {port: {number: 80}, tls: {mode: DISABLE}}]"), Some("already has settings")),
        ("port empty", &policy("portLevelSettings: [{port: {number: 80}}]"), Some("at least one of connectionPool")),
        ("port range", &policy("portLevelSettings: [{port: {number: 0}, tls: {mode: SIMPLE}}]"), Some("port number 0")),
    ]);
}

#[test]
fn load_balancer() {
    let lb = |s: &str| policy(&format!("loadBalancer: {{{s}}}"));
    run(&[
        ("simple", &lb("simple: LEAST_REQUEST"), None),
        ("hash header", &lb("consistentHash: {httpHeaderName: x-user}"), None),
        ("two keys", &lb("consistentHash: {httpHeaderName: x-user, useSourceIp: true}"), Some("only one hash key")),
        ("cookie no name", &lb("consistentHash: {httpCookie: {ttl: 0s}}"), Some("httpCookie needs a name")),
        ("cookie attrs", &lb("consistentHash: {httpCookie: {name: c, attributes: [{name: SameSite, value: Strict}, {name: SameSite}]}}"), Some("duplicate cookie attribute")),
        ("ring and maglev", &lb("consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 1024}, maglev: {tableSize: 65537}}"), Some("only one of ringHash or maglev")),
        ("old ring size with ringHash", &lb("consistentHash: {useSourceIp: true, minimumRingSize: 10, ringHash: {minimumRingSize: 1024}}"), Some("cannot be combined")),
        ("maglev prime", &lb("consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}"), None),
        ("maglev not prime", &lb("consistentHash: {useSourceIp: true, maglev: {tableSize: 65536}}"), Some("prime")),
        ("maglev unset", &lb("consistentHash: {useSourceIp: true, maglev: {}}"), Some("needs a tableSize")),
        ("maglev too big", &lb("consistentHash: {useSourceIp: true, maglev: {tableSize: 5000011}}"), Some("less than 5000011")),
        ("locality and zone aware", &lb("localityLbSetting: {enabled: true}, zoneAwareLbSetting: {enabled: true}"), Some("only one of localityLbSetting or zoneAwareLbSetting")),
        ("warmup", &lb("warmup: {duration: 60s, aggression: 2.0}"), None),
        ("warmup aggression 0", &lb("warmup: {duration: 60s, aggression: 0}"), Some("greater than 0")),
    ]);
    let w = warnings(&check(
        &spec::<DestinationRule>(&lb("consistentHash: {minimumRingSize: 10}")),
        &CTX,
    ));
    assert!(
        w.iter().any(|w| w.contains("deprecated")) && w.iter().any(|w| w.contains("no hash key")),
        "{w:?}"
    );
}

#[test]
fn locality() {
    let loc = |s: &str| {
        policy(&format!("outlierDetection: {{consecutive5xxErrors: 5}}, loadBalancer: {{localityLbSetting: {{{s}}}}}"))
    };
    run(&[
        ("distribute ok", &loc("distribute: [{from: us-west/zone1/*, to: {us-west/zone1/*: 80, us-west/zone2/*: 20}}]"), None),
        ("distribute sum", &loc("distribute: [{from: us-west/*, to: {us-west/zone1: 70, us-east/*: 20}}]"), Some("add up to 100 (they add up to 90)")),
        ("distribute zero", &loc("distribute: [{from: a/*, to: {a/b: 0, c/*: 100}}]"), Some("range 1..100")),
        ("distribute overlap", &loc("distribute: [{from: us-west/*, to: {us-west/*: 50, us-west/zone1: 50}}]"), Some("overlaps")),
        ("wildcard in the middle", &loc("distribute: [{from: 'us-*/zone1', to: {a: 100}}]"), Some("at the end")),
        ("both", &loc("distribute: [{from: a, to: {a: 100}}], failover: [{from: a, to: b}]"), Some("only one of distribute or failover")),
        ("failover ok", &loc("failover: [{from: us-east, to: eu-west}]"), None),
        ("failover same", &loc("failover: [{from: us-east, to: us-east}]"), Some("different one")),
        ("failover zone", &loc("failover: [{from: us-east/z1, to: eu-west}]"), Some("regions only")),
        ("failover wildcard", &loc("failover: [{from: '*', to: eu-west}]"), Some("wildcard")),
        ("failover with topology priority", &loc("failover: [{from: a, to: b}], failoverPriority: [topology.kubernetes.io/region]"), Some("topology label")),
        ("zone aware priority", &policy("outlierDetection: {consecutive5xxErrors: 5}, loadBalancer: {zoneAwareLbSetting: {failoverPriority: [topology.kubernetes.io/zone]}}"), Some("must not use the topology label")),
    ]);
    let w = warnings(&check(
        &spec::<DestinationRule>(&policy(
            "loadBalancer: {localityLbSetting: {failover: [{from: a, to: b}]}}",
        )),
        &CTX,
    ));
    assert!(
        w.iter().any(|w| w.contains("add outlierDetection")),
        "{w:?}"
    );
}

#[test]
fn outlier_and_pool() {
    run(&[
        ("outlier ok", &policy("outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 100}"), None),
        ("max ejection", &policy("outlierDetection: {maxEjectionPercent: 101}"), Some("not in range 0..100")),
        ("min health", &policy("outlierDetection: {minHealthPercent: -1}"), Some("not in range 0..100")),
        ("local origin", &policy("outlierDetection: {consecutiveLocalOriginFailures: 3}"), Some("splitExternalLocalOriginErrors")),
        ("local origin split", &policy("outlierDetection: {consecutiveLocalOriginFailures: 3, splitExternalLocalOriginErrors: true}"), None),
        ("interval precision", &policy("outlierDetection: {interval: 1.0001s}"), Some("finer than a millisecond")),
        ("pool ok", &policy("connectionPool: {tcp: {maxConnections: 100, connectTimeout: 30ms}, http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10}}"), None),
        ("pool empty", &policy("connectionPool: {}"), Some("http or tcp")),
        ("pool negative", &policy("connectionPool: {http: {http1MaxPendingRequests: -1}}"), Some("must not be negative (got -1)")),
        ("pool tcp negative", &policy("connectionPool: {tcp: {maxConnections: -5}}"), Some("must not be negative (got -5)")),
        ("upgrade with client protocol", &policy("connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}"), Some("useClientProtocol")),
        ("keepalive half", &policy("connectionPool: {http: {http2KeepAlive: {interval: 10s}}}"), Some("http2KeepAlive.timeout is required")),
    ]);
    let w = warnings(&check(
        &spec::<DestinationRule>(&policy("outlierDetection: {consecutiveErrors: 5}")),
        &CTX,
    ));
    assert!(w.iter().any(|w| w.contains("deprecated")), "{w:?}");
}

#[test]
fn tls() {
    let tls = |s: &str| policy(&format!("tls: {{{s}}}"));
    run(&[
        ("istio mutual", &tls("mode: ISTIO_MUTUAL, sni: a.com"), None),
        ("mutual files", &tls("mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem"), None),
        ("mutual credential", &tls("mode: MUTUAL, credentialName: client-cred"), None),
        ("mutual missing key", &tls("mode: MUTUAL, clientCertificate: /c.pem"), Some("MUTUAL TLS requires privateKey")),
        ("credential with files", &tls("mode: SIMPLE, credentialName: c, caCertificates: /ca.pem"), Some("caCertificates cannot be set together with credentialName")),
        ("skip verify with ca", &tls("mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca.pem"), Some("insecureSkipVerify")),
        ("skip verify plain", &tls("mode: SIMPLE, insecureSkipVerify: true"), None),
        ("configmap ok", &tls("mode: SIMPLE, credentialName: configmap://default/ca"), None),
        ("configmap other ns", &tls("mode: SIMPLE, credentialName: configmap://other/ca"), Some("configmap://default/ca")),
        ("configmap no ns", &tls("mode: SIMPLE, credentialName: configmap://ca"), Some("configmap://<namespace>/<name>")),
    ]);
    let d = check(
        &spec::<DestinationRule>(&tls("mode: ISTIO_MUTUAL, clientCertificate: /c.pem")),
        &CTX,
    );
    assert!(
        errors(&d).is_empty() && warnings(&d).iter().any(|w| w.contains("ignored")),
        "{d:?}"
    );
}
