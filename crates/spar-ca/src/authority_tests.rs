use std::fs;

use rcgen::{CertifiedIssuer, PKCS_RSA_SHA256};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::*;

const TD: &str = "cluster.local";

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa).unwrap()
}

/// A CSR asking for `names`: `spiffe://` ones as URI SANs, the rest as DNS names.
pub(crate) fn csr(names: &[String], key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|n| {
            let s = Ia5String::try_from(n.as_str()).unwrap();
            if n.starts_with("spiffe://") {
                SanType::URI(s)
            } else {
                SanType::DnsName(s)
            }
        })
        .collect();
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn csr_for(id: &SpiffeId) -> String {
    csr(&[id.to_string()], &KeyPair::generate().unwrap())
}

fn verify_chain(ca: &Ca, chain: &CertChain) -> SpiffeId {
    let ders: Vec<CertificateDer<'static>> = chain
        .pem
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect();
    assert_eq!(ders[0], chain.leaf, "leaf comes first");
    assert_eq!(ders.last(), Some(ca.root()), "root comes last");
    verify_svid(&ders, &[ca.root().clone()], TD, UnixTime::now()).unwrap()
}

#[test]
fn signs_an_svid_with_the_fields_the_spec_asks_for() {
    let ca = Ca::generate(TD).unwrap();
    let me = id("default", "reviews");
    let ttl = Duration::from_secs(3600);
    let chain = ca.sign_csr(&csr_for(&me), &me, ttl).unwrap();
    assert_eq!(chain.pem.len(), 2);
    assert_eq!(verify_chain(&ca, &chain), me);

    let (_, leaf) = X509Certificate::from_der(&chain.leaf).unwrap();
    assert!(!leaf.is_ca());
    let mut uris = Vec::new();
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) => uris.push(u.to_string()),
                        other => panic!("unexpected SAN {other:?}"),
                    }
                }
            }
            ParsedExtension::KeyUsage(ku) => {
                assert!(ku.digital_signature());
                assert!(!ku.key_encipherment() && !ku.key_cert_sign() && !ku.crl_sign());
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(eku.server_auth && eku.client_auth && !eku.any);
            }
            ParsedExtension::BasicConstraints(bc) => assert!(!bc.ca),
            _ => {}
        }
    }
    assert_eq!(uris, vec![me.to_string()]);
    let v = leaf.validity();
    let lifetime = v.not_after.timestamp() - v.not_before.timestamp();
    assert_eq!(lifetime, (ttl + BACKDATE).as_secs() as i64);
    assert!(v.not_before.timestamp() <= OffsetDateTime::now_utc().unix_timestamp());
}

#[test]
fn refuses_a_csr_for_another_service_account() {
    let ca = Ca::generate(TD).unwrap();
    let me = id("default", "reviews");
    let other = id("default", "ratings");
    let err = ca
        .sign_csr(&csr_for(&other), &me, Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, CaError::NotEntitled { .. }), "{err}");

    // Another namespace, the same service account name.
    let err = ca
        .sign_csr(
            &csr_for(&id("prod", "reviews")),
            &me,
            Duration::from_secs(60),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::NotEntitled { .. }), "{err}");

    // Its own identity plus one more is still refused.
    let both = csr(
        &[me.to_string(), other.to_string()],
        &KeyPair::generate().unwrap(),
    );
    let err = ca
        .sign_csr(&both, &me, Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, CaError::NotEntitled { .. }), "{err}");

    // DNS names are not something a workload identity entitles to.
    let dns = csr(
        &[me.to_string(), "ratings.default.svc".into()],
        &KeyPair::generate().unwrap(),
    );
    let err = ca.sign_csr(&dns, &me, Duration::from_secs(60)).unwrap_err();
    assert!(matches!(err, CaError::NotEntitled { .. }), "{err}");
}

#[test]
fn a_csr_without_names_gets_the_callers_identity() {
    let ca = Ca::generate(TD).unwrap();
    let me = id("default", "reviews");
    let chain = ca
        .sign_csr(
            &csr(&[], &KeyPair::generate().unwrap()),
            &me,
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(verify_chain(&ca, &chain), me);
}

#[test]
fn refuses_a_caller_from_another_trust_domain() {
    let ca = Ca::generate(TD).unwrap();
    let stranger = SpiffeId::new("other.example", "default", "reviews").unwrap();
    let err = ca
        .sign_csr(&csr_for(&stranger), &stranger, Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, CaError::WrongTrustDomain { .. }), "{err}");
}

#[test]
fn refuses_a_csr_with_a_bad_signature() {
    let ca = Ca::generate(TD).unwrap();
    let me = id("default", "reviews");
    let good = csr_for(&me);
    let mut der = CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let pos = der.windows(8).position(|w| w == b"/reviews").unwrap();
    der[pos + 1] = b'R';
    let forged = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let err = ca
        .sign_csr(&forged, &me, Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, CaError::Csr(CsrError::BadSignature)), "{err}");
}

#[test]
fn rsa_keys_also_get_key_encipherment() {
    let ca = Ca::generate(TD).unwrap();
    let me = id("default", "reviews");
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let chain = ca
        .sign_csr(&csr(&[me.to_string()], &key), &me, Duration::from_secs(60))
        .unwrap();
    verify_chain(&ca, &chain);
    let (_, leaf) = X509Certificate::from_der(&chain.leaf).unwrap();
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
}

/// Writes Istio's plug-in layout: a root, an intermediate signed by it, and the chain.
fn plugged_dir(intermediate_ttl: Duration, chain_has_root: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let mut root_params = CertificateParams::default();
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root_params
        .distinguished_name
        .push(DnType::CommonName, "test root");
    let root = CertifiedIssuer::self_signed(root_params, KeyPair::generate().unwrap()).unwrap();

    let mut int_params = CertificateParams::default();
    int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    int_params
        .distinguished_name
        .push(DnType::CommonName, "test intermediate");
    int_params.not_before = now - Duration::from_secs(3600);
    int_params.not_after = now + intermediate_ttl;
    int_params.use_authority_key_identifier_extension = true;
    let int_key = KeyPair::generate().unwrap();
    let int_key_pem = int_key.serialize_pem();
    let int = CertifiedIssuer::signed_by(int_params, int_key, &root).unwrap();

    let d = dir.path();
    fs::write(d.join(CA_CERT_FILE), int.pem()).unwrap();
    fs::write(d.join(CA_KEY_FILE), int_key_pem).unwrap();
    fs::write(d.join(ROOT_CERT_FILE), root.pem()).unwrap();
    let chain = if chain_has_root {
        format!("{}{}", int.pem(), root.pem())
    } else {
        int.pem()
    };
    fs::write(d.join(CERT_CHAIN_FILE), chain).unwrap();
    dir
}

#[test]
fn plugged_root_and_intermediate_chain_verifies() {
    for chain_has_root in [true, false] {
        let dir = plugged_dir(Duration::from_secs(30 * 24 * 3600), chain_has_root);
        let ca = Ca::load_plugged(dir.path(), TD).unwrap();
        assert_eq!(ca.intermediates().len(), 1);
        let me = id("default", "reviews");
        let chain = ca
            .sign_csr(&csr_for(&me), &me, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(chain.pem.len(), 3, "leaf, intermediate, root");
        assert_eq!(verify_chain(&ca, &chain), me);
        // Without the intermediate the leaf does not chain to the root.
        let err = verify_svid(
            std::slice::from_ref(&chain.leaf),
            &[ca.root().clone()],
            TD,
            UnixTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, SvidError::UntrustedChain), "{err:?}");
    }
}

#[test]
fn leaf_validity_is_capped_by_the_signing_certificate() {
    let dir = plugged_dir(Duration::from_secs(1800), true);
    let ca = Ca::load_plugged(dir.path(), TD).unwrap();
    let me = id("default", "reviews");
    let chain = ca
        .sign_csr(&csr_for(&me), &me, Duration::from_secs(24 * 3600))
        .unwrap();
    let (_, leaf) = X509Certificate::from_der(&chain.leaf).unwrap();
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        ca.not_after().unix_timestamp()
    );
    verify_chain(&ca, &chain);
}

#[test]
fn plugged_ca_with_the_wrong_key_is_refused() {
    let dir = plugged_dir(Duration::from_secs(3600), true);
    fs::write(
        dir.path().join(CA_KEY_FILE),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err = Ca::load_plugged(dir.path(), TD).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
}

#[test]
fn plugged_root_that_did_not_sign_the_intermediate_is_refused() {
    let dir = plugged_dir(Duration::from_secs(3600), false);
    let other = Ca::generate(TD).unwrap();
    fs::write(dir.path().join(ROOT_CERT_FILE), other.root_pem()).unwrap();
    let err = Ca::load_plugged(dir.path(), TD).unwrap_err();
    assert!(matches!(err, CaError::BrokenChain { .. }), "{err}");
}

#[test]
fn plugged_leaf_certificate_is_not_a_ca() {
    let dir = plugged_dir(Duration::from_secs(3600), true);
    let ca = Ca::generate(TD).unwrap();
    let key = KeyPair::generate().unwrap();
    let me = id("default", "reviews");
    let chain = ca
        .sign_csr(&csr(&[me.to_string()], &key), &me, Duration::from_secs(600))
        .unwrap();
    fs::write(dir.path().join(CA_CERT_FILE), &chain.pem[0]).unwrap();
    fs::write(dir.path().join(CA_KEY_FILE), key.serialize_pem()).unwrap();
    let err = Ca::load_plugged(dir.path(), TD).unwrap_err();
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");
}

#[test]
fn missing_plugged_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::load_plugged(dir.path(), TD).unwrap_err();
    assert!(err.to_string().contains(CA_CERT_FILE), "{err}");
}

#[test]
fn serving_certificate_chains_to_the_root() {
    let ca = Ca::generate(TD).unwrap();
    let (chain, key) = ca
        .issue_server_cert(
            &["istiod.istio-system.svc", "localhost"],
            &[],
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let certs: Vec<_> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs.len(), 2);
    let anchors = [webpki::anchor_from_trusted_cert(ca.root()).unwrap()];
    let ee = webpki::EndEntityCert::try_from(&certs[0]).unwrap();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .unwrap();
    let name = rustls_pki_types::ServerName::try_from("istiod.istio-system.svc").unwrap();
    ee.verify_is_valid_for_subject_name(&name).unwrap();
}
