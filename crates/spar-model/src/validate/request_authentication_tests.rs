use super::super::peer_authentication::reference_tests::{expect, found, spec, CTX};
use super::*;

fn run(yaml: &str) -> Vec<Diagnostic> {
    check(&spec::<RequestAuthentication>(yaml), &CTX)
}

fn table(cases: &[(&str, &[&str], &[&str])]) {
    for (yaml, errors, warnings) in cases {
        let d = run(yaml);
        assert_eq!(found(&d), expect(errors, warnings), "{yaml}\n{d:#?}");
    }
}

#[test]
fn issuer_or_jwks_uri() {
    table(&[
        ("jwtRules: [{issuer: a}]", &[], &[]),
        ("jwtRules: [{jwksUri: 'https://a.com/k'}]", &[], &[]),
        ("jwtRules: [{jwks_uri: 'https://a.com/k'}]", &[], &[]),
        ("jwtRules: [{}]", &["spec.jwtRules[0].issuer"], &[]),
        (
            "jwtRules: [{issuer: a}, {fromHeaders: [{name: x}]}]",
            &["spec.jwtRules[1].issuer"],
            &[],
        ),
    ]);
}

#[test]
fn jwks_uri() {
    let cases: &[(&str, bool)] = &[
        ("https://example.com/.well-known/jwks.json", true),
        ("http://example.com:8080/k", true),
        ("HTTPS://example.com", true),
        ("https://[::1]:443/k", true),
        ("https://[fe80::1%25eth0]/k", true),
        ("https://user:pw@example.com/k", true),
        ("https://example.com:/k", true),
        ("https://10.0.0.1/k?x=%zz", true),
        ("https://a.com/a%20b#frag", true),
        ("https://foo.com:not-a-number", false),
        ("https://foo.com:0/", false),
        ("https://foo.com:65536/", false),
        ("https://foo.com:+80/", false),
        ("https:///path", false),
        ("https://:80/path", false),
        ("https:foo", false),
        ("https://exa mple.com", false),
        ("https://ex!ample.com", false),
        ("https://[::zz]/", false),
        ("https://[::1/", false),
        ("https://[::1]x/", false),
        ("https://a.com/%zz", false),
        ("https://a.com/p#%G1", false),
    ];
    for (uri, ok) in cases {
        for field in ["jwksUri", "jwks_uri"] {
            let d = run(&format!("jwtRules: [{{issuer: a, {field}: '{uri}'}}]"));
            let path = format!("spec.jwtRules[0].{field}");
            let want: &[&str] = if *ok { &[] } else { &[&path] };
            assert_eq!(found(&d), expect(want, &[]), "{uri}\n{d:#?}");
        }
    }
}

#[test]
fn inline_jwks() {
    const RSA: &str =
        r#"{"kty":"RSA","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf5","e":"AQAB","kid":"k"}"#;
    let sets: Vec<(String, usize, usize)> = vec![
        (format!(r#"{{"keys":[{RSA}]}}"#), 0, 0),
        (r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"},{"kty":"OKP","crv":"Ed25519","x":"AQ"}]}"#.into(), 0, 0),
        (r#"{"keys":[{"kty":"RSA","n":"AQ+/AQ==","e":"AQAB","use":"sig"}]}"#.into(), 0, 0),
        ("foo".into(), 1, 0),
        ("[]".into(), 1, 0),
        (r#"{"keys":{}}"#.into(), 1, 0),
        (r#"{"keys":[]}"#.into(), 1, 0),
        (r#"{"keys":[1]}"#.into(), 1, 0),
        (r#"{"keys":[{"kty":"XYZ"}]}"#.into(), 1, 0),
        (r#"{"keys":[{"kty":7}]}"#.into(), 1, 0),
        (r#"{"keys":[{"n":"AQAB","e":"AQAB"}]}"#.into(), 1, 0),
        (r#"{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}"#.into(), 1, 0),
        (r#"{"keys":[{"kty":"RSA","n":5,"e":"AQAB"}]}"#.into(), 1, 0),
        (r#"{"keys":[{"kty":"RSA","n":"A","e":"AQAB"}]}"#.into(), 1, 0),
        (RSA.into(), 0, 1),
        (r#"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#.into(), 0, 1),
        (r#"{"keys":[{"kty":"EC","x":"AQAB"}]}"#.into(), 0, 1),
        (r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]}"#.into(), 0, 1),
        (r#"{"keys":[{"kty":"oct","k":"AQAB"}]}"#.into(), 0, 1),
        (format!(r#"{{"keys":[{RSA},{{"kty":"oct"}}]}}"#), 0, 2),
    ];
    for (jwks, errors, warnings) in sets {
        let yaml = format!("jwtRules: [{{issuer: a, jwks: '{jwks}'}}]");
        let d = run(&yaml);
        let at = "spec.jwtRules[0].jwks";
        assert_eq!(
            found(&d),
            expect(&vec![at; errors], &vec![at; warnings]),
            "{jwks}\n{d:#?}"
        );
    }
}

#[test]
fn header_names() {
    let r = "spec.jwtRules[0]";
    table(&[
        ("jwtRules: [{issuer: a, fromHeaders: [{name: x-jwt, prefix: 'Bearer '}, {name: ':authority'}]}]", &[], &[]),
        ("jwtRules: [{issuer: a, fromHeaders: [{name: ok}, {name: 'x jwt'}]}]", &[], &[&format!("{r}.fromHeaders[1].name")]),
        ("jwtRules: [{issuer: a, outputPayloadToHeader: x-jwt-payload}]", &[], &[]),
        ("jwtRules: [{issuer: a, outputPayloadToHeader: 'x payload'}]", &[&format!("{r}.outputPayloadToHeader")], &[]),
        ("jwtRules: [{issuer: a, outputPayloadToHeader: ':path'}]", &[&format!("{r}.outputPayloadToHeader")], &[]),
    ]);
}

#[test]
fn selector_and_target_refs() {
    table(&[
        ("selector: {}", &[], &["spec.selector"]),
        (
            "targetRef: {kind: Deployment, group: apps, name: d}",
            &["spec.targetRef"],
            &[],
        ),
        (
            "targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: s}]",
            &[],
            &[],
        ),
    ]);
}
