//! Each CEL rule's check, valid and invalid, and the Go parsers behind them.

use super::*;

const F: Outcome = Outcome::Fail;
const P: Outcome = Outcome::Pass;

fn err(msg: &str) -> Outcome {
    Outcome::Error(msg.to_string())
}

/// `(self as YAML, expected outcome)` cases for the rule with exactly this text.
fn rule(text: &str, cases: &[(&str, Outcome)]) {
    let check = cel::lookup(text).unwrap_or_else(|| panic!("no check for {text:?}"));
    for (yaml, want) in cases {
        let got = check.eval(&node(yaml));
        assert_eq!(&got, want, "rule {text:?} on {yaml:?}");
    }
}

#[test]
fn label_selector_rules() {
    rule(
        "!self.contains(\"*\")",
        &[("bar", P), ("'bar*'", F), ("'*'", F)],
    );
    rule(
        "self.all(key, !key.contains(\"*\"))",
        &[("{a: b}", P), ("{}", P), ("{'a*': b}", F)],
    );
    rule(
        "self.all(key, key.size() != 0)",
        &[("{a: b}", P), ("{'': b}", F)],
    );
}

#[test]
fn target_ref_rules() {
    rule("self.size() == 0", &[("''", P), ("bar", F)]);
    rule(
        "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1",
        &[
            ("{}", P),
            ("{selector: {}}", P),
            ("{selector: {}, targetRefs: []}", F),
        ],
    );
    rule(
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1",
        &[("{targetRef: {}}", P), ("{targetRef: {}, targetRefs: []}", F), ("{selector: {}, targetRef: {}}", F)],
    );
    rule(
        "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1",
        &[
            ("{workloadSelector: {}}", P),
            ("{workloadSelector: {}, targetRefs: [{}]}", F),
        ],
    );
}

#[test]
fn wasm_rules() {
    rule(
        "has(self.wasm) != has(self.lua)",
        &[
            ("{wasm: {}}", P),
            ("{lua: {}}", P),
            ("{}", F),
            ("{wasm: {}, lua: {}}", F),
        ],
    );
    let url_cases = [
        ("http://test", P),
        ("oci://ghcr.io/istio/filter:1.0", P),
        ("file:///opt/filter.wasm", P),
        ("ghcr.io/istio/filter:1.0", P),
        ("/opt/filter.wasm", P),
        ("HTTPS://example.com/a.wasm", P),
        ("fake://example.com", F),
        ("'#%blah$#@'", F),
        // Not a URL itself, but `http://` + it is one (host `http:`), as in Go.
        ("'http://a b/'", P),
        ("'a b'", F),
    ];
    rule(
        "isURL(self) ? (url(self).getScheme() in [\"\", \"http\", \"https\", \"file\", \"oci\"]) : (isURL(\"http://\" + self) &&\nurl(\"http://\" + self).getScheme() in [\"\", \"http\", \"https\", \"file\", \"oci\"])",
        &url_cases,
    );
    rule(
        "isURL(self) ? (url(self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"]) : (isURL(\"http://\" + self) &&\nurl(\"http://\" + self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"])",
        &url_cases,
    );
    rule(
        "(has(self.valueFrom) ? self.valueFrom : \"\") != \"HOST\" || !has(self.value)",
        &[
            ("{name: a, value: v}", P),
            ("{valueFrom: INLINE, value: v}", P),
            ("{valueFrom: HOST}", P),
            ("{valueFrom: HOST, value: v}", F),
        ],
    );
}

#[test]
fn duration_and_port_rules() {
    rule(
        "duration(self) >= duration('1ms')",
        &[
            ("1ms", P),
            ("1h2m3.5s", P),
            ("10us", F),
            ("0s", F),
            ("-5s", F),
            ("0.0011s", P),
            ("10", err("time: missing unit in duration \"10\"")),
            ("5d", err("time: unknown unit \"d\" in duration \"5d\"")),
        ],
    );
    rule(
        "0 < self && self <= 65535",
        &[("1", P), ("65535", P), ("'80'", P), ("0", F), ("65536", F)],
    );
    rule(
        "self.all(key, 0 < int(key) && int(key) <= 65535)",
        &[
            ("{'80': {}}", P),
            ("{'0': {}}", F),
            ("{'42949672': {}}", F),
            (
                "{acd: {}}",
                err("type conversion error from 'string' to 'int'"),
            ),
            // False wins over an evaluation error, as in CEL's `all`.
            ("{acd: {}, '0': {}}", F),
        ],
    );
}

#[test]
fn envoy_filter_waypoint_rule() {
    rule(
        "has(self.context) ? ((self.context == \"WAYPOINT\") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)",
        &[
            ("{}", P),
            ("{context: WAYPOINT, waypoint: {}}", P),
            ("{context: SIDECAR_INBOUND, listener: {}}", P),
            ("{context: WAYPOINT, listener: {}}", F),
            ("{context: SIDECAR_INBOUND, waypoint: {}}", F),
            ("{waypoint: {}}", F),
        ],
    );
}

#[test]
fn gateway_tls_rules() {
    rule(
        "(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1",
        &[
            ("{tlsCertificates: []}", P),
            ("{tlsCertificates: [], credentialNames: []}", F),
        ],
    );
    rule(
        "(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1",
        &[
            ("{credentialName: a}", P),
            ("{credentialName: a, credentialNames: [b]}", F),
        ],
    );
    rule(
        "(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1",
        &[
            ("{credentialNames: [a]}", P),
            ("{credentialNames: [a], tlsCertificates: [{}]}", F),
        ],
    );
}

#[test]
fn service_entry_rules() {
    rule(
        "(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1",
        &[
            ("{endpoints: []}", P),
            ("{workloadSelector: {}, endpoints: [{address: a}]}", F),
        ],
    );
    rule(
        "!((has(self.addresses) ? self.addresses : []).exists(k, k.contains(\"/\")) && !((has(self.resolution) ? self.resolution : \"NONE\") in [\"STATIC\", \"NONE\"]))",
        &[
            ("{addresses: [1.2.3.4/16]}", P),
            ("{addresses: [1.2.3.4/16], resolution: STATIC}", P),
            ("{addresses: [1.2.3.4], resolution: DNS}", P),
            ("{addresses: [1.2.3.4/16], resolution: DNS}", F),
        ],
    );
    rule(
        "((has(self.resolution) ? self.resolution : \"NONE\") == \"NONE\") ? !has(self.endpoints) : true",
        &[("{resolution: STATIC, endpoints: []}", P), ("{}", P), ("{endpoints: []}", F), ("{resolution: NONE, endpoints: []}", F)],
    );
    rule(
        "((has(self.resolution) ? self.resolution : \"\") == \"DNS_ROUND_ROBIN\") ? ((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true",
        &[
            ("{resolution: DNS_ROUND_ROBIN, endpoints: [{}]}", P),
            ("{resolution: DNS, endpoints: [{}, {}]}", P),
            ("{resolution: DNS_ROUND_ROBIN, endpoints: [{}, {}]}", F),
        ],
    );
    rule(
        "self != \"*\"",
        &[("example.com", P), ("'*.example.com'", P), ("'*'", F)],
    );
    rule(
        "self.all(l1, self.exists_one(l2, l1.number == l2.number))",
        &[
            ("[{number: 1}, {number: 2}]", P),
            ("[{number: 1}, {number: 1}]", F),
            ("[{number: 1}, {number: '1'}]", F),
            ("[{name: a}]", err("no such key: number")),
        ],
    );
}

#[test]
fn workload_entry_rules() {
    rule(
        "has(self.address) || has(self.network)",
        &[("{address: a}", P), ("{network: n}", P), ("{}", F)],
    );
    rule(
        "(has(self.address) ? self.address : \"\").startsWith(\"unix://\") ? !has(self.ports) : true",
        &[("{address: '1.1.1.1', ports: {}}", P), ("{address: 'unix://@foo'}", P), ("{address: 'unix://@foo', ports: {http: 80}}", F)],
    );
    rule(
        "self.startsWith(\"unix://\") ? (self.substring(7, 8) == \"/\" || self.substring(7, 8) == \"@\") : true",
        &[
            ("1.1.1.1", P),
            ("'unix:///var/run/a.sock'", P),
            ("'unix://@abstract'", P),
            ("'unix://relative'", F),
            ("'unix://'", err("index out of range: 8")),
        ],
    );
    rule(
        "self.startsWith(\"unix://\") ? !self.endsWith(\"/\") : true",
        &[("'unix:///a'", P), ("'a/'", P), ("'unix:///dir/'", F)],
    );
    rule(
        "self.all(key, size(key) < 63 && key.matches(\"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$\"))",
        &[("{http: 80, grpc-web: 81}", P), ("{'@': 80}", F), ("{'-a': 80}", F), (format!("{{{}: 1}}", "a".repeat(63)).as_str(), F)],
    );
}

#[test]
fn security_rules() {
    rule(
        "self in [\"\", \"HTTP\", \"HTTPS\"]",
        &[("HTTP", P), ("''", P), ("http", F)],
    );
    rule(
        "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true",
        &[
            ("{serviceAccounts: [a]}", P),
            ("{principals: [a], namespaces: [b]}", P),
            ("{serviceAccounts: [a], namespaces: [b]}", F),
            ("{notServiceAccounts: [a], notPrincipals: [b]}", F),
        ],
    );
    rule(
        "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels : {}).size() > 0) : true",
        &[
            ("{mtls: {}}", P),
            ("{selector: {matchLabels: {a: b}}, portLevelMtls: {}}", P),
            ("{portLevelMtls: {'80': {}}}", F),
            ("{selector: {matchLabels: {}}, portLevelMtls: {'80': {}}}", F),
        ],
    );
    rule(
        "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1",
        &[("{jwksUri: a}", P), ("{jwks_uri: a}", P), ("{jwksUri: a, jwks: b}", F), ("{jwksUri: a, jwks_uri: a}", F)],
    );
    let url_rule = "url(self).getScheme() in [\"http\", \"https\"]";
    rule(
        url_rule,
        &[
            ("https://a/jwks.json", P),
            ("HTTP://a", P),
            ("ftp://a", F),
            ("/jwks", F),
        ],
    );
    let Outcome::Error(e) = cel::lookup(url_rule)
        .expect("rule")
        .eval(&node("\"hTPp\\\\\\blah\""))
    else {
        panic!("a control character is a URL parse error")
    };
    assert!(
        e.starts_with("URL parse error during conversion from string: parse \"hTPp\\\\\\blah\""),
        "{e}"
    );
}

#[test]
fn telemetry_rules() {
    rule(
        "((has(self.operation) ? self.operation : \"\") == \"UPSERT\") ? (self.value != \"\") : true",
        &[("{operation: UPSERT, value: x}", P), ("{value: x}", P), ("{operation: UPSERT, value: ''}", F), ("{operation: UPSERT}", err("no such key: value"))],
    );
    rule(
        "((has(self.operation) ? self.operation : \"\") == \"REMOVE\") ? !has(self.value) : true",
        &[
            ("{operation: REMOVE}", P),
            ("{operation: UPSERT, value: x}", P),
            ("{operation: REMOVE, value: x}", F),
        ],
    );
}

#[test]
fn go_durations() {
    let ms = 1_000_000;
    let cases: &[(&str, Result<i64, &str>)] = &[
        ("0", Ok(0)),
        ("-0", Ok(0)),
        ("1h2m3.5s", Ok(3_723_500 * ms)),
        ("500ms", Ok(500 * ms)),
        ("10us", Ok(10_000)),
        ("10\u{b5}s", Ok(10_000)),
        ("1.5h", Ok(5_400_000 * ms)),
        (".5s", Ok(500 * ms)),
        ("5.s", Ok(5_000 * ms)),
        ("-1.5ms", Ok(-1_500_000)),
        ("+3s", Ok(3_000 * ms)),
        ("2562047h47m16.854775807s", Ok(i64::MAX)),
        (
            "2562047h47m16.854775808s",
            Err("time: invalid duration \"2562047h47m16.854775808s\""),
        ),
        ("", Err("time: invalid duration \"\"")),
        ("s", Err("time: invalid duration \"s\"")),
        (".s", Err("time: invalid duration \".s\"")),
        ("1", Err("time: missing unit in duration \"1\"")),
        ("1d", Err("time: unknown unit \"d\" in duration \"1d\"")),
        ("1s ", Err("time: unknown unit \"s \" in duration \"1s \"")),
        (" 1s", Err("time: invalid duration \" 1s\"")),
    ];
    for (text, want) in cases {
        assert_eq!(
            go::parse_duration(text),
            want.map_err(str::to_string),
            "{text:?}"
        );
    }
}

#[test]
fn go_request_uris() {
    let cases: &[(&str, Option<&str>)] = &[
        ("http://example.com/a", Some("http")),
        ("HTTPS://example.com:8443/a?b=c", Some("https")),
        ("oci://ghcr.io/a/b:1.0", Some("oci")),
        ("file:///opt/a.wasm", Some("file")),
        ("mailto:a@b", Some("mailto")),
        ("/only/a/path", Some("")),
        ("*", Some("")),
        ("http://user:pw@host/", Some("http")),
        ("http://[::1]:80/", Some("http")),
        ("", None),
        ("relative/path", None),
        ("ghcr.io/a/b:1.0", None),
        ("://x", None),
        ("http://host:port/", None),
        ("http://a b/", None),
        ("http://a/%zz", None),
        ("http://#%blah$#@", None),
        ("a\u{8}b", None),
    ];
    for (text, want) in cases {
        let got = go::parse_request_uri(text).ok().map(|u| u.scheme);
        assert_eq!(got.as_deref(), *want, "{text:?}");
    }
}

#[test]
fn go_quoting() {
    assert_eq!(go::go_quote("a\"b\\c\u{8}\n"), "\"a\\\"b\\\\c\\b\\n\"");
    assert_eq!(go::go_quote("é"), "\"é\"");
}
