use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::*;
use crate::Ca;

const TD: &str = "cluster.local";
const ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// A test root that signs whatever leaf parameters a case needs.
struct TestRoot {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn test_root() -> TestRoot {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    // A distinct name per root, so "another root" is not mistaken for the issuer.
    let mut serial = [0u8; 8];
    aws_lc_rs::rand::fill(&mut serial).unwrap();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("test root {serial:02x?}"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    TestRoot {
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

/// Leaf parameters that make a valid SVID; each case breaks one thing.
fn good_leaf() -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![uri(ID)];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = now - Duration::from_secs(60);
    p.not_after = now + Duration::from_secs(3600);
    p
}

fn uri(s: &str) -> SanType {
    SanType::URI(Ia5String::try_from(s).unwrap())
}

fn sign(root: &TestRoot, params: &CertificateParams) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, &root.issuer).unwrap().der().clone()
}

fn verify(root: &TestRoot, leaf: CertificateDer<'static>) -> Result<SpiffeId, SvidError> {
    verify_svid(
        &[leaf],
        std::slice::from_ref(&root.der),
        TD,
        UnixTime::now(),
    )
}

#[test]
fn accepts_a_valid_svid() {
    let root = test_root();
    let id = verify(&root, sign(&root, &good_leaf())).unwrap();
    assert_eq!(id.to_string(), ID);
}

#[test]
fn rejects_two_uri_sans() {
    let root = test_root();
    let mut p = good_leaf();
    p.subject_alt_names
        .push(uri("spiffe://cluster.local/ns/default/sa/ratings"));
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::MultipleUriSans(2)), "{err:?}");
}

#[test]
fn rejects_a_leaf_without_uri_san() {
    let root = test_root();
    let mut p = good_leaf();
    p.subject_alt_names = vec![SanType::DnsName(Ia5String::try_from("reviews").unwrap())];
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::NoUriSan), "{err:?}");
}

#[test]
fn rejects_a_ca_certificate_as_leaf() {
    let root = test_root();
    let mut p = good_leaf();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::LeafIsCa), "{err:?}");
}

#[test]
fn rejects_a_leaf_that_can_sign_certificates() {
    let root = test_root();
    let mut p = good_leaf();
    p.key_usages.push(KeyUsagePurpose::KeyCertSign);
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::LeafCanSign), "{err:?}");
}

#[test]
fn rejects_a_leaf_without_digital_signature() {
    let root = test_root();
    let mut p = good_leaf();
    p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::NoDigitalSignature), "{err:?}");
}

#[test]
fn rejects_a_leaf_with_only_server_auth() {
    let root = test_root();
    let mut p = good_leaf();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::WrongExtendedKeyUsage), "{err:?}");
}

#[test]
fn rejects_a_nul_byte_in_a_san() {
    let root = test_root();
    for san in [
        uri("spiffe://cluster.local/ns/default/sa/reviews\0.evil"),
        SanType::DnsName(Ia5String::try_from("reviews\0.evil.com").unwrap()),
    ] {
        let mut p = good_leaf();
        if matches!(san, SanType::URI(_)) {
            p.subject_alt_names = vec![san];
        } else {
            p.subject_alt_names.push(san);
        }
        let err = verify(&root, sign(&root, &p)).unwrap_err();
        assert!(matches!(err, SvidError::NulInSan(_)), "{err:?}");
    }
}

#[test]
fn rejects_the_wrong_trust_domain() {
    let root = test_root();
    let mut p = good_leaf();
    p.subject_alt_names = vec![uri("spiffe://evil.example/ns/default/sa/reviews")];
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    match err {
        SvidError::WrongTrustDomain {
            expected, found, ..
        } => {
            assert_eq!(expected, TD);
            assert_eq!(found, "evil.example");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rejects_a_uri_that_is_not_a_workload_id() {
    let root = test_root();
    let mut p = good_leaf();
    p.subject_alt_names = vec![uri("https://cluster.local/ns/default/sa/reviews")];
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::InvalidSpiffeId(_)), "{err:?}");
}

#[test]
fn rejects_an_expired_certificate() {
    let root = test_root();
    let now = OffsetDateTime::now_utc();
    let mut p = good_leaf();
    p.not_before = now - Duration::from_secs(7200);
    p.not_after = now - Duration::from_secs(3600);
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::Expired { .. }), "{err:?}");

    // The same valid leaf, checked at a time after its expiry.
    let leaf = sign(&root, &good_leaf());
    let later = UnixTime::since_unix_epoch(Duration::from_secs(
        (now + Duration::from_secs(7200)).unix_timestamp() as u64,
    ));
    let err = verify_svid(&[leaf], std::slice::from_ref(&root.der), TD, later).unwrap_err();
    assert!(matches!(err, SvidError::Expired { .. }), "{err:?}");
}

#[test]
fn rejects_a_not_yet_valid_certificate() {
    let root = test_root();
    let now = OffsetDateTime::now_utc();
    let mut p = good_leaf();
    p.not_before = now + Duration::from_secs(3600);
    p.not_after = now + Duration::from_secs(7200);
    let err = verify(&root, sign(&root, &p)).unwrap_err();
    assert!(matches!(err, SvidError::NotYetValid { .. }), "{err:?}");
}

#[test]
fn rejects_a_chain_to_another_root() {
    let root = test_root();
    let other = test_root();
    let leaf = sign(&root, &good_leaf());
    let err = verify_svid(
        &[leaf],
        std::slice::from_ref(&other.der),
        TD,
        UnixTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, SvidError::UntrustedChain), "{err:?}");
}

#[test]
fn rejects_a_forged_signature() {
    let root = test_root();
    let mut der = sign(&root, &good_leaf()).as_ref().to_vec();
    // The last bytes are the signature's S value.
    let n = der.len();
    der[n - 3] ^= 0x55;
    let err = verify(&root, CertificateDer::from(der)).unwrap_err();
    assert!(
        matches!(
            err,
            SvidError::BadSignature | SvidError::Malformed { .. } | SvidError::Chain(_)
        ),
        "{err:?}"
    );
}

#[test]
fn rejects_an_empty_chain_and_garbage() {
    let root = test_root();
    let err = verify_svid(&[], std::slice::from_ref(&root.der), TD, UnixTime::now()).unwrap_err();
    assert!(matches!(err, SvidError::Empty), "{err:?}");
    let err = verify(&root, CertificateDer::from(vec![0x30, 0x01, 0x00])).unwrap_err();
    assert!(
        matches!(err, SvidError::Malformed { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn accepts_what_the_ca_signs_and_rejects_it_after_expiry() {
    let ca = Ca::generate(TD).unwrap();
    let key = KeyPair::generate().unwrap();
    let csr = crate::authority::tests::csr(&[ID.to_string()], &key);
    let id: SpiffeId = ID.parse().unwrap();
    let chain = ca.sign_csr(&csr, &id, Duration::from_secs(300)).unwrap();
    let roots = [ca.root().clone()];
    assert_eq!(
        verify_svid(
            std::slice::from_ref(&chain.leaf),
            &roots,
            TD,
            UnixTime::now()
        )
        .unwrap(),
        id
    );
    // A trailing root in the presented chain is tolerated.
    verify_svid(
        &[chain.leaf.clone(), ca.root().clone()],
        &roots,
        TD,
        UnixTime::now(),
    )
    .unwrap();
    let later = UnixTime::since_unix_epoch(Duration::from_secs(UnixTime::now().as_secs() + 301));
    let err = verify_svid(&[chain.leaf], &roots, TD, later).unwrap_err();
    assert!(matches!(err, SvidError::Expired { .. }), "{err:?}");
}
