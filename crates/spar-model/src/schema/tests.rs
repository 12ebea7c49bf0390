use std::collections::BTreeSet;

use super::cel::{self, Outcome};
use super::check::Walker;
use super::go;
use super::model::Schema;
use super::*;
use crate::yaml::parse_documents;

fn node(yaml: &str) -> Node {
    parse_documents(yaml).expect("test yaml").remove(0).root
}

/// Validates `yaml` against an inline schema; returns `path: message` lines.
fn run(schema: &str, yaml: &str) -> Vec<String> {
    // A document that is only `~` is no document at all; build that null by hand.
    let n = if yaml == "~" {
        Node::null(crate::yaml::Mark { line: 1, col: 1 })
    } else {
        node(yaml)
    };
    let schema: Schema = serde_json::from_str(schema).expect("test schema");
    let mut out = Vec::new();
    Walker::new(&mut out).check(&schema, &n, &mut FieldPath::root().field("spec"));
    out.iter().map(render).collect()
}

fn render(d: &Diagnostic) -> String {
    match &d.path {
        Some(p) => format!("{p}: {}", d.message),
        None => d.message.clone(),
    }
}

/// Each case: yaml, and `None` for valid or a substring of the single expected diagnostic.
fn table(schema: &str, cases: &[(&str, Option<&str>)]) {
    for (yaml, want) in cases {
        let got = run(schema, yaml);
        match want {
            None => assert!(got.is_empty(), "{yaml:?} should pass, got {got:?}"),
            Some(w) => assert!(
                got.len() == 1 && got[0].contains(w),
                "{yaml:?}: want one diagnostic containing {w:?}, got {got:?}"
            ),
        }
    }
}

// === the compiled-in schema ===

#[test]
fn compiled_in_schema_loads_with_every_kind() {
    let s = schemas();
    assert_eq!(s.by_kind.len(), 15);
    for k in crate::istio::KINDS {
        let schema = &s.by_kind[k.kind];
        assert_eq!(schema.group, k.group);
        assert_eq!(schema.versions, k.versions);
        assert_eq!(schema.storage_version, k.storage_version);
    }
    assert!(has_schema("VirtualService") && !has_schema("Service"));
}

#[test]
fn every_rule_in_the_schema_has_a_check() {
    let mut rules = BTreeSet::new();
    for k in schemas().by_kind.values() {
        k.spec
            .walk(&mut |s| rules.extend(s.validations.iter().map(|v| v.rule.as_str())));
    }
    let missing: Vec<_> = rules.iter().filter(|r| cel::lookup(r).is_none()).collect();
    assert!(
        missing.is_empty(),
        "x-kubernetes-validations rules without a check in cel.rs: {missing:#?}"
    );
    assert_eq!(
        rules.len(),
        cel::rule_count(),
        "cel.rs has checks for rules the schema no longer uses"
    );
    println!("{} distinct CEL rules, all implemented", rules.len());
}

#[test]
fn missing_spec_follows_the_crd() {
    let base = FieldPath::root().field("spec");
    let root = node("kind: ServiceEntry\nmetadata: {name: a}\n");
    let d = missing_spec("ServiceEntry", &base, &root).expect("ServiceEntry requires spec");
    assert_eq!(
        (render(&d).as_str(), d.line),
        ("spec: Required value", Some(1))
    );
    assert!(missing_spec("VirtualService", &base, &root).is_none());
    assert!(missing_spec("NotAKind", &base, &root).is_none());
}

#[test]
fn diagnostics_carry_path_and_line() {
    let n = node("hosts: [a]\nhttp:\n- route:\n  - destination:\n      host: a\n    weight: x\n");
    let d = validate_spec("VirtualService", &n, &FieldPath::root().field("spec"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].path.as_ref().map(ToString::to_string).as_deref(),
        Some("spec.http[0].route[0].weight")
    );
    assert_eq!(d[0].line, Some(6));
    assert!(d[0].is_error());
}

#[test]
fn unknown_kinds_and_fields_are_not_reported_here() {
    let base = FieldPath::root().field("spec");
    assert!(validate_spec("Frobnicator", &node("a: 1"), &base).is_empty());
    assert!(validate_spec(
        "VirtualService",
        &node("hostz: [a]\nhttp: [{nope: 1}]"),
        &base
    )
    .is_empty());
}

// === types, with our deserializer's leniency ===

#[test]
fn string_fields_take_any_non_null_scalar() {
    let s = r#"{"type":"object","properties":{"x":{"type":"string"}}}"#;
    table(
        s,
        &[
            ("x: abc", None),
            ("x: 1", None),
            ("x: true", None),
            ("x: 1.5", None),
            (
                "x: ~",
                Some(
                    r#"spec.x: Invalid value: "null": spec.x in body must be of type string: "null""#,
                ),
            ),
            ("x: {a: 1}", Some(r#"must be of type string: "object""#)),
            ("x: [a]", Some(r#"must be of type string: "array""#)),
        ],
    );
}

#[test]
fn integer_fields_take_integers_and_quoted_integers() {
    let s = r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#;
    table(
        s,
        &[
            ("n: 80", None),
            ("n: '80'", None),
            ("n: 8.0", None),
            ("n: 0x10", None),
            (
                "n: abc",
                Some(r#"spec.n in body must be of type integer: "string""#),
            ),
            ("n: 1.5", Some(r#"must be of type integer: "number""#)),
            ("n: true", Some(r#"must be of type integer: "boolean""#)),
            ("n:", Some(r#"must be of type integer: "null""#)),
        ],
    );
}

#[test]
fn number_and_boolean_fields() {
    let s = r#"{"type":"object","properties":{"f":{"type":"number"},"b":{"type":"boolean"}}}"#;
    table(
        s,
        &[
            ("f: 1", None),
            ("f: 1.5", None),
            ("f: '2.5'", None),
            ("f: x", Some(r#"must be of type number: "string""#)),
            ("b: true", None),
            ("b: off", None),
            (
                "b: 'true'",
                Some(r#"spec.b in body must be of type boolean: "string""#),
            ),
            ("b: 1", Some(r#"must be of type boolean: "integer""#)),
        ],
    );
}

#[test]
fn objects_arrays_and_nullable() {
    let s = r#"{"type":"object","properties":{
        "o":{"type":"object","properties":{"a":{"type":"string"}}},
        "l":{"type":"array","items":{"type":"object","properties":{"a":{"type":"string"}}}},
        "n":{"type":"boolean","nullable":true}}}"#;
    table(
        s,
        &[
            ("o: {a: x}", None),
            (
                "o:",
                Some(
                    r#"spec.o: Invalid value: "null": spec.o in body must be of type object: "null""#,
                ),
            ),
            ("o: x", Some(r#"must be of type object: "string""#)),
            (
                "l: x",
                Some(r#"spec.l in body must be of type array: "string""#),
            ),
            (
                "l: [~]",
                Some(r#"spec.l[0] in body must be of type object: "null""#),
            ),
            (
                "l: [{a: [1]}]",
                Some(r#"spec.l[0].a in body must be of type string: "array""#),
            ),
            ("n: ~", None),
        ],
    );
    assert_eq!(
        run(s, "~"),
        [r#"spec: Invalid value: "null": spec in body must be of type object: "null""#]
    );
}

#[test]
fn int_or_string() {
    let s = r#"{"type":"object","properties":{"p":{"x-kubernetes-int-or-string":true,
        "anyOf":[{"type":"integer"},{"type":"string"}]}}}"#;
    table(
        s,
        &[
            ("p: 80", None),
            ("p: http", None),
            ("p: '80'", None),
            ("p: true", Some("must be of type integer or string")),
            ("p: {a: 1}", Some("must be of type integer or string")),
        ],
    );
}

// === value checks ===

#[test]
fn required_fields() {
    let s = r#"{"type":"object","required":["hosts","name"],"properties":{"hosts":{"type":"array"},"name":{"type":"string"}}}"#;
    assert_eq!(run(s, "hosts: []\nname: a"), Vec::<String>::new());
    assert_eq!(run(s, "name: a"), ["spec.hosts: Required value"]);
    assert_eq!(
        run(s, "{}"),
        ["spec.hosts: Required value", "spec.name: Required value"]
    );
    // A present null is not missing: it is the wrong type.
    assert_eq!(
        run(s, "hosts: []\nname:"),
        [r#"spec.name: Invalid value: "null": spec.name in body must be of type string: "null""#]
    );
}

#[test]
fn enums() {
    let s =
        r#"{"type":"object","properties":{"mode":{"type":"string","enum":["UNSET","STRICT"]}}}"#;
    table(
        s,
        &[
            ("mode: STRICT", None),
            (
                "mode: BLAH",
                Some(
                    r#"spec.mode: Unsupported value: "BLAH": supported values: "UNSET", "STRICT""#,
                ),
            ),
            ("mode: strict", Some("Unsupported value")),
        ],
    );
}

#[test]
fn string_lengths_patterns_and_formats() {
    let s = r#"{"type":"object","properties":{
        "name":{"type":"string","minLength":1,"maxLength":3},
        "sha":{"type":"string","pattern":"(^$|^[a-f0-9]{4}$)"},
        "bytes":{"type":"string","format":"byte"}}}"#;
    table(
        s,
        &[
            ("name: abc", None),
            ("name: 'é'", None),
            (
                "name: ''",
                Some(
                    r#"spec.name: Invalid value: "": spec.name in body should be at least 1 chars long"#,
                ),
            ),
            (
                "name: abcd",
                Some("spec.name: Too long: may not be longer than 3"),
            ),
            ("name: ééé", None),
            ("sha: ''", None),
            ("sha: beef", None),
            (
                "sha: foo",
                Some(
                    r#"spec.sha: Invalid value: "foo": spec.sha in body should match '(^$|^[a-f0-9]{4}$)'"#,
                ),
            ),
            ("bytes: aGVsbG8=", None),
            (
                "bytes: 'hello!'",
                Some(r#"spec.bytes in body must be of type byte: "hello!""#),
            ),
        ],
    );
}

#[test]
fn numeric_ranges() {
    let s = r#"{"type":"object","properties":{
        "c":{"type":"integer","minimum":0},
        "p":{"type":"number","minimum":0,"maximum":100},
        "x":{"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":10,"exclusiveMaximum":true}}}"#;
    table(
        s,
        &[
            ("c: 0", None),
            ("c: -1", Some("spec.c: Invalid value: -1: spec.c in body should be greater than or equal to 0")),
            ("c: '-1'", Some("should be greater than or equal to 0")),
            ("p: 100", None),
            ("p: 150.0", Some("spec.p: Invalid value: 150.0: spec.p in body should be less than or equal to 100")),
            ("p: -0.1", Some("should be greater than or equal to 0")),
            ("x: 5", None),
            ("x: 0", Some("should be greater than 0")),
            ("x: 10", Some("should be less than 10")),
        ],
    );
}

#[test]
fn collection_sizes() {
    let s = r#"{"type":"object","properties":{
        "l":{"type":"array","minItems":1,"maxItems":2,"items":{"type":"string"}},
        "m":{"type":"object","minProperties":1,"maxProperties":2,"additionalProperties":{"type":"string"}}}}"#;
    table(
        s,
        &[
            ("l: [a]", None),
            (
                "l: []",
                Some("spec.l: Invalid value: 0: spec.l in body should have at least 1 items"),
            ),
            (
                "l: [a, b, c]",
                Some("spec.l: Too many: 3: must have at most 2 items"),
            ),
            ("m: {a: x}", None),
            (
                "m: {}",
                Some("spec.m: Invalid value: 0: spec.m in body should have at least 1 properties"),
            ),
            (
                "m: {a: x, b: y, c: z}",
                Some("spec.m in body should have at most 2 properties"),
            ),
            // A repeated key counts once, as the deserializer keeps only the last.
            ("m: {a: x, a: y}", None),
        ],
    );
}

#[test]
fn map_values_are_paths_with_keys() {
    let s = r#"{"type":"object","properties":{"m":{"type":"object","additionalProperties":{"type":"integer","maximum":9}}}}"#;
    assert_eq!(
        run(s, "m: {'80': 10}"),
        ["spec.m[80]: Invalid value: 10: spec.m[80] in body should be less than or equal to 9"]
    );
}

#[test]
fn list_map_keys_are_unique() {
    let s = r#"{"type":"object","properties":{"ports":{"type":"array","x-kubernetes-list-type":"map",
        "x-kubernetes-list-map-keys":["number"],
        "items":{"type":"object","properties":{"number":{"type":"integer"},"name":{"type":"string"}}}}}}"#;
    table(
        s,
        &[
            ("ports: [{number: 80}, {number: 81}]", None),
            (
                "ports: [{number: 80}, {number: 80}]",
                Some(r#"spec.ports[1]: Duplicate value: {"number":80}"#),
            ),
            (
                "ports: [{number: 80}, {number: '80'}]",
                Some("Duplicate value"),
            ),
        ],
    );
    let s = r#"{"type":"object","properties":{"tags":{"type":"array","x-kubernetes-list-type":"set","items":{"type":"string"}}}}"#;
    table(
        s,
        &[
            ("tags: [a, b]", None),
            (
                "tags: [a, b, a]",
                Some(r#"spec.tags[2]: Duplicate value: "a""#),
            ),
        ],
    );
}

#[test]
fn istio_one_of_means_at_most_one() {
    let s = r#"{"type":"object","properties":{"uri":{"type":"object",
        "oneOf":[{"not":{"anyOf":[{"required":["exact"]},{"required":["prefix"]},{"required":["regex"]}]}},
                 {"required":["exact"]},{"required":["prefix"]},{"required":["regex"]}],
        "properties":{"exact":{"type":"string"},"prefix":{"type":"string"},"regex":{"type":"string"}}}}}"#;
    table(
        s,
        &[
            ("uri: {}", None),
            ("uri: {prefix: /a}", None),
            (
                "uri: {exact: /a, regex: x}",
                Some(
                    r#"spec.uri: Invalid value: "object": only one of exact, prefix or regex can be set"#,
                ),
            ),
        ],
    );
    let two = r#"{"type":"object","oneOf":[{"not":{"anyOf":[{"required":["a"]},{"required":["b"]}]}},{"required":["a"]},{"required":["b"]}]}"#;
    table(
        two,
        &[
            ("{a: 1}", None),
            ("{a: 1, b: 2}", Some("only one of a or b can be set")),
        ],
    );
}

#[test]
fn generic_combinators() {
    let one_of = r#"{"type":"object","oneOf":[{"required":["a"]},{"required":["b"]}]}"#;
    table(
        one_of,
        &[
            ("{a: 1}", None),
            (
                "{}",
                Some("must validate one and only one schema (oneOf). Found 0 valid alternatives"),
            ),
            ("{a: 1, b: 1}", Some("Found 2 valid alternatives")),
        ],
    );
    let any_of = r#"{"type":"object","anyOf":[{"required":["a"]},{"required":["b"]}]}"#;
    table(
        any_of,
        &[
            ("{b: 1}", None),
            ("{}", Some("must validate at least one schema (anyOf)")),
        ],
    );
    let not = r#"{"type":"object","not":{"required":["a"]}}"#;
    table(
        not,
        &[
            ("{b: 1}", None),
            ("{a: 1}", Some("must not validate the schema (not)")),
        ],
    );
    let all_of = r#"{"type":"object","allOf":[{"required":["a"]},{"required":["b"]}]}"#;
    table(
        all_of,
        &[
            ("{a: 1, b: 1}", None),
            ("{a: 1}", Some("spec.b: Required value")),
        ],
    );
    // Untyped sub-schemas apply whatever fits the value they meet.
    let scalar = r#"{"type":"object","properties":{"s":{"type":"string","allOf":[{"maxLength":2}]},
        "n":{"type":"integer","allOf":[{"maximum":2}]}}}"#;
    table(
        scalar,
        &[
            ("{s: ab, n: 2}", None),
            (
                "{s: abc}",
                Some("spec.s: Too long: may not be longer than 2"),
            ),
            (
                "{n: 3}",
                Some("spec.n in body should be less than or equal to 2"),
            ),
        ],
    );
}

#[test]
fn cel_failures_and_errors_use_the_rule_message() {
    let s = r#"{"type":"object","properties":{"t":{"type":"string",
        "x-kubernetes-validations":[{"rule":"duration(self) >= duration('1ms')","message":"must be a valid duration greater than 1ms"}]}}}"#;
    table(
        s,
        &[
            ("t: 5s", None),
            (
                "t: 0.5ms",
                Some(
                    r#"spec.t: Invalid value: "string": must be a valid duration greater than 1ms"#,
                ),
            ),
            (
                "t: apple",
                Some(
                    r#"spec.t: Invalid value: "string": time: invalid duration "apple" evaluating rule: must be a valid duration greater than 1ms"#,
                ),
            ),
        ],
    );
}

mod rules;
