use super::super::peer_authentication::reference_tests::{expect, found, spec, CTX};
use super::*;

fn run(yaml: &str) -> Vec<Diagnostic> {
    check(&spec::<Telemetry>(yaml), &CTX)
}

fn table(cases: &[(&str, &[&str], &[&str])]) {
    for (yaml, errors, warnings) in cases {
        let d = run(yaml);
        assert_eq!(found(&d), expect(errors, warnings), "{yaml}\n{d:#?}");
    }
}

#[test]
fn cel_syntax_accepts() {
    let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
    let ok = [
        "true",
        "response.code >= 400",
        "response.code >= 400 || xds.cluster_name == 'foo'",
        "has(request.headers.x) && !has(a[0].b)",
        "request.url_path.startsWith('/api') && request.headers['user-agent'].contains(\"curl\")",
        "[1, 2, 3].exists(x, x > 2) && m.all(k, k != '') && l.map(x, x * 2).filter(y, y % 2 == 0).size() > 0",
        "m.map(k, v, v * 2) == m && l.exists_one(e, e)",
        "{'a': 1, 'b': 2,}['a'] == 1 && {}.size() == 0",
        "a ? b : c ? d : e",
        "-1 < 2 && 2u > 1U && --1 == 1 && !!true",
        "1.5e3 > 0.0 && .5 > 0.1 && 1e-3 < 2E+2",
        "0xFF == 255 && 0x1u == 1u && 18446744073709551615u > 0u && -9223372036854775808 < 0",
        r#"r'\d+' != b"x" && R"\q" == Rb'\z' && bR'x' == br"x""#,
        "'''multi\nline''' + \"\"\"x\"\"\" == 'a'",
        r#"'\u00e9\x41\101\n\t\\\'\"\`\?\a\b\f\r\v\U0001F600' != ''"#,
        "google.protobuf.Duration{seconds: 5} == .google.protobuf.Duration{seconds: 5,}",
        "x in [1, 2,] && 'k' in {'k': 1}",
        "size(a) > 0 // logs only non-empty\n && f()",
        "null == null && a.b.c(1, 'x').d[e].f",
        &deep,
    ];
    for e in ok {
        assert_eq!(cel::check_syntax(e), Ok(()), "{e}");
    }
}

#[test]
fn cel_syntax_rejects() {
    let deep = format!("{}a{}", "(".repeat(300), ")".repeat(300));
    let bad = [
        "response.code >=",
        "a &&",
        "(a",
        "a)",
        "a b",
        "'unterminated",
        "'a\nb'",
        r"'\q'",
        r"'\x4'",
        "1 = 1",
        "a & b",
        "a | b",
        "has(a)",
        "has(a.b())",
        "has(request.headers['x'])",
        "x.all(1, true)",
        "x.exists(a.b, true)",
        "x.map(a.b, 1)",
        "if",
        "a + while",
        "f(a,)",
        "[,]",
        "0x",
        "1e",
        "1e+",
        "99999999999999999999",
        "9223372036854775809",
        "18446744073709551616u",
        "a[0]{c: 1}",
        "a.b{1: 2}",
        "{1: 2",
        "{1, 2}",
        "a ? b",
        "a.",
        ".1.",
        "$",
        "a.(b)",
        &deep,
    ];
    for e in bad {
        assert!(cel::check_syntax(e).is_err(), "{e:?} should not parse");
    }
    assert_eq!(
        cel::check_syntax("a b"),
        Err("unexpected \"b\" at column 3".to_string())
    );
}

#[test]
fn access_log_filter() {
    let p = "spec.accessLogging[0].filter.expression";
    table(&[
        ("accessLogging: [{providers: [{name: a}]}]", &[], &[]),
        (
            "accessLogging: [{filter: {expression: 'response.code >= 400'}}]",
            &[],
            &[],
        ),
        ("accessLogging: [{filter: {}}]", &[p], &[]),
        ("accessLogging: [{filter: {expression: ' '}}]", &[p], &[]),
        (
            "accessLogging: [{filter: {expression: 'response.code >='}}]",
            &[p],
            &[],
        ),
        (
            "accessLogging: [{}, {filter: {expression: 'has(a)'}}]",
            &["spec.accessLogging[1].filter.expression"],
            &[],
        ),
    ]);
}

#[test]
fn tag_overrides() {
    let t = "spec.metrics[0].overrides[0].tagOverrides";
    let over = |tags: &str| format!("metrics: [{{overrides: [{{tagOverrides: {tags}}}]}}]");
    let cases: Vec<(String, Vec<String>, Vec<String>)> = vec![
        (over("{foo: {value: request.host}}"), vec![], vec![]),
        (over("{foo: {operation: UPSERT, value: x}}"), vec![], vec![]),
        (over("{foo: {operation: REMOVE}}"), vec![], vec![]),
        (over("{foo: {}}"), vec![format!("{t}[foo].value")], vec![]),
        (
            over("{foo: {value: ''}}"),
            vec![format!("{t}[foo].value")],
            vec![],
        ),
        (
            over("{foo: {operation: UPSERT}}"),
            vec![format!("{t}[foo].value")],
            vec![],
        ),
        (
            over("{foo: {operation: REMOVE, value: x}}"),
            vec![format!("{t}[foo].value")],
            vec![],
        ),
        (over("{'': {value: x}}"), vec![], vec![format!("{t}[]")]),
    ];
    for (yaml, errors, warnings) in &cases {
        let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
        let warnings: Vec<&str> = warnings.iter().map(String::as_str).collect();
        let d = run(yaml);
        assert_eq!(found(&d), expect(&errors, &warnings), "{yaml}\n{d:#?}");
    }
}

#[test]
fn tracing() {
    let tag = |t: &str| format!("tracing: [{{customTags: {t}}}]");
    let cases: Vec<(String, &[&str], &[&str])> = vec![
        ("tracing: [{providers: [{name: a}], randomSamplingPercentage: 10}]".into(), &[], &[]),
        ("tracing: [{providers: [{name: a}]}, {providers: [{name: b}]}]".into(), &[], &["spec.tracing"]),
        ("tracing: [{providers: [{name: a}, {name: b}]}]".into(), &[], &["spec.tracing[0].providers"]),
        (tag("{a: {literal: {value: x}}, b: {environment: {name: HOME}}, c: {header: {name: x-id}}}"), &[], &[]),
        (tag("{a: {header: {name: ':authority'}}}"), &[], &[]),
        (tag("{'': {literal: {value: x}}}"), &["spec.tracing[0].customTags[]"], &[]),
        (tag("{a: {header: {name: 'x id'}}}"), &[], &["spec.tracing[0].customTags[a].header.name"]),
    ];
    for (yaml, errors, warnings) in &cases {
        let d = run(yaml);
        assert_eq!(found(&d), expect(errors, warnings), "{yaml}\n{d:#?}");
    }
}

#[test]
fn selector_and_target_refs() {
    table(&[
        ("selector: {}", &[], &["spec.selector"]),
        (
            "targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}",
            &[],
            &[],
        ),
        (
            "targetRefs: [{kind: Namespace, name: n}]",
            &["spec.targetRefs[0]"],
            &[],
        ),
    ]);
}
