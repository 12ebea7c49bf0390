use super::super::peer_authentication::reference_tests::{expect, found, spec, CTX};
use super::*;

const SHA: &str = "1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210";
const OTHER_SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn wasm(yaml: &str) -> Vec<Diagnostic> {
    check_wasm(&spec::<WasmPlugin>(yaml), &CTX)
}

fn traffic(yaml: &str) -> Vec<Diagnostic> {
    check_traffic_extension(&spec::<TrafficExtension>(yaml), &CTX)
}

/// Runs each row both as a WasmPlugin spec and as a TrafficExtension's `wasm`.
fn module_table(cases: &[(String, &[&str])]) {
    for (fields, errors) in cases {
        let d = wasm(&format!("{{{fields}}}"));
        let want: Vec<String> = errors.iter().map(|f| format!("spec.{f}")).collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(found(&d), expect(&want, &[]), "WasmPlugin {fields}\n{d:#?}");

        let d = traffic(&format!("wasm: {{{fields}}}"));
        let want: Vec<String> = errors.iter().map(|f| format!("spec.wasm.{f}")).collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(
            found(&d),
            expect(&want, &[]),
            "TrafficExtension {fields}\n{d:#?}"
        );
    }
}

#[test]
fn urls() {
    let rows: Vec<(String, &[&str])> = [
        ("oci://ghcr.io/org/plugin:1.0", true),
        ("ghcr.io/org/plugin:1.0", true),
        ("test", true),
        ("http://test", true),
        ("https://example.com/plugin.wasm", true),
        ("file:///opt/filters/openid.wasm", true),
        ("file://", false),
        ("file:///", false),
        ("http:///plugin.wasm", false),
        ("https://", false),
        ("oci://", false),
        ("oci://ghcr.io", false),
        ("oci://ghcr.io/", false),
    ]
    .into_iter()
    .map(|(url, ok)| {
        (
            format!("url: '{url}'"),
            if ok { &[][..] } else { &["url"][..] },
        )
    })
    .collect();
    module_table(&rows);
}

#[test]
fn sha256_against_url_digest() {
    let rows: Vec<(String, &[&str])> = vec![
        (
            format!("url: 'oci://r.io/p@sha256:{SHA}', sha256: {SHA}"),
            &[],
        ),
        (format!("url: 'oci://r.io/p@sha256:{SHA}'"), &[]),
        (format!("url: 'oci://r.io/p:1', sha256: {SHA}"), &[]),
        (
            format!(
                "url: 'oci://r.io/p@sha256:{}', sha256: {SHA}",
                SHA.to_uppercase()
            ),
            &[],
        ),
        (
            format!("url: 'oci://r.io/p@sha256:{OTHER_SHA}', sha256: {SHA}"),
            &["sha256"],
        ),
    ];
    module_table(&rows);
}

#[test]
fn env_names_unique() {
    let rows: Vec<(String, &[&str])> = vec![
        (
            "url: test, vmConfig: {env: [{name: a}, {name: b, valueFrom: HOST}]}".into(),
            &[],
        ),
        (
            "url: test, vmConfig: {env: [{name: a}, {name: a, value: x}]}".into(),
            &["vmConfig.env[1].name"],
        ),
        (
            "url: test, vmConfig: {env: [{name: a}, {name: b}, {name: a}, {name: b}]}".into(),
            &["vmConfig.env[2].name", "vmConfig.env[3].name"],
        ),
    ];
    module_table(&rows);
    let d = wasm("{url: test, vmConfig: {env: [{name: a}, {name: a}]}}");
    assert!(
        d[0].message.contains("Duplicate value") && d[0].message.contains("env[0]"),
        "{d:#?}"
    );
}

#[test]
fn lua_code_size_in_bytes() {
    let ascii = "x".repeat(LUA_MAX_BYTES);
    let d = traffic(&format!("lua: {{inlineCode: '{ascii}'}}"));
    assert!(d.is_empty(), "{d:#?}");
    // Fewer characters than the limit, more bytes.
    let wide = "é".repeat(LUA_MAX_BYTES / 2 + 1);
    let d = traffic(&format!("lua: {{inlineCode: '{wide}'}}"));
    assert_eq!(found(&d), expect(&["spec.lua.inlineCode"], &[]), "{d:#?}");
}

#[test]
fn selector_and_target_refs() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("{url: test, selector: {}}", &[], &["spec.selector"]),
        ("{url: test, targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}}", &[], &[]),
        ("{url: test, targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: r}]}", &["spec.targetRefs[0]"], &[]),
    ];
    for (yaml, errors, warnings) in cases {
        let d = wasm(yaml);
        assert_eq!(found(&d), expect(errors, warnings), "{yaml}\n{d:#?}");
    }
    let d = traffic("{lua: {inlineCode: x}, selector: {}, targetRefs: [{kind: Pod, name: p}]}");
    assert_eq!(
        found(&d),
        expect(&["spec.targetRefs[0]"], &["spec.selector"]),
        "{d:#?}"
    );
}
