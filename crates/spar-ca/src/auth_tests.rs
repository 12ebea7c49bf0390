use std::time::Duration;

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use tonic::metadata::MetadataValue;

use super::*;
use crate::authority::tests::csr;
use crate::Ca;

const TD: &str = "cluster.local";

fn bearer(token: &str) -> MetadataMap {
    let mut md = MetadataMap::new();
    md.insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    md
}

fn no_certs(md: &MetadataMap) -> Caller<'_> {
    Caller {
        metadata: md,
        peer_certs: None,
    }
}

fn tokens() -> StaticTokens {
    let mut t = StaticTokens::new();
    t.insert(
        "s3cret-reviews",
        SpiffeId::new(TD, "default", "reviews").unwrap(),
    );
    t
}

#[test]
fn a_known_token_gives_its_identity() {
    let md = bearer("s3cret-reviews");
    let id = tokens().authenticate(&no_certs(&md)).unwrap();
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
}

#[test]
fn unknown_missing_and_malformed_tokens_are_refused() {
    let t = tokens();
    let md = bearer("s3cret-ratings");
    assert!(matches!(
        t.authenticate(&no_certs(&md)),
        Err(AuthError::UnknownToken)
    ));
    let md = MetadataMap::new();
    assert!(matches!(
        t.authenticate(&no_certs(&md)),
        Err(AuthError::NoCredentials)
    ));
    let mut md = MetadataMap::new();
    md.insert("authorization", MetadataValue::from_static("Basic abc"));
    assert!(matches!(
        t.authenticate(&no_certs(&md)),
        Err(AuthError::MalformedAuthorization)
    ));
}

#[test]
fn a_token_holder_cannot_get_another_service_accounts_certificate() {
    let ca = Ca::generate(TD).unwrap();
    let md = bearer("s3cret-reviews");
    let caller = tokens().authenticate(&no_certs(&md)).unwrap();
    let other = SpiffeId::new(TD, "default", "ratings").unwrap();
    let req = csr(&[other.to_string()], &KeyPair::generate().unwrap());
    let err = ca
        .sign_csr(&req, &caller, Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, crate::CaError::NotEntitled { .. }), "{err}");
}

#[test]
fn token_file_lines_are_parsed_and_errors_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(
        &path,
        "# token ns/sa\ns3cret-reviews default/reviews\n\ns3cret-gw istio-system/ingress # gateway\n",
    )
    .unwrap();
    let t = StaticTokens::load(&path, TD).unwrap();
    assert_eq!(t.len(), 2);
    let md = bearer("s3cret-gw");
    assert_eq!(
        t.authenticate(&no_certs(&md)).unwrap().to_string(),
        "spiffe://cluster.local/ns/istio-system/sa/ingress"
    );

    std::fs::write(&path, "ok default/a\nbroken\n").unwrap();
    match StaticTokens::load(&path, TD) {
        Err(AuthError::TokenLine { line, .. }) => assert_eq!(line, 2),
        other => panic!("unexpected {:?}", other.map(|t| t.len())),
    }
    std::fs::write(&path, "tok default/Bad..Name/x\n").unwrap();
    assert!(StaticTokens::load(&path, TD).is_err());
}

#[test]
fn a_valid_client_svid_renews_the_same_identity() {
    let ca = Ca::generate(TD).unwrap();
    let me = SpiffeId::new(TD, "default", "reviews").unwrap();
    let chain = ca
        .sign_csr(
            &csr(&[me.to_string()], &KeyPair::generate().unwrap()),
            &me,
            Duration::from_secs(60),
        )
        .unwrap();
    let certs: Vec<CertificateDer<'static>> = chain
        .pem
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect();
    let auth = PeerCertificate::new(vec![ca.root().clone()], TD);
    let md = MetadataMap::new();
    let caller = Caller {
        metadata: &md,
        peer_certs: Some(&certs),
    };
    assert_eq!(auth.authenticate(&caller).unwrap(), me);

    // A certificate from another CA is refused, not ignored.
    let other = Ca::generate(TD).unwrap();
    let auth = PeerCertificate::new(vec![other.root().clone()], TD);
    assert!(matches!(
        auth.authenticate(&caller),
        Err(AuthError::BadPeerCertificate(_))
    ));
    // No certificate: this authenticator has nothing to say.
    assert!(matches!(
        auth.authenticate(&no_certs(&md)),
        Err(AuthError::NoCredentials)
    ));
}

#[test]
fn any_of_falls_through_only_on_missing_credentials() {
    let ca = Ca::generate(TD).unwrap();
    let any = AnyOf(vec![
        Box::new(tokens()),
        Box::new(PeerCertificate::new(vec![ca.root().clone()], TD)),
    ]);
    let md = bearer("s3cret-reviews");
    assert!(any.authenticate(&no_certs(&md)).is_ok());
    let md = bearer("wrong");
    assert!(matches!(
        any.authenticate(&no_certs(&md)),
        Err(AuthError::UnknownToken)
    ));
    let md = MetadataMap::new();
    assert!(matches!(
        any.authenticate(&no_certs(&md)),
        Err(AuthError::NoCredentials)
    ));
}
