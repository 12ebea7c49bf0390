//! A plugged-in CA made by openssl the way Istio's docs do it (RSA root, RSA intermediate with
//! a PKCS#1 `RSA PRIVATE KEY`, cert-chain.pem = intermediate + root): Spar loads it, signs a
//! workload CSR, and openssl verifies the result against the root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use spar_ca::{verify_svid, Ca, SpiffeId};

fn have_openssl() -> bool {
    if Command::new("openssl").arg("version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("SPAR_REQUIRE_PEERS").is_none(),
        "openssl is required (SPAR_REQUIRE_PEERS is set) but not installed"
    );
    eprintln!("skipping: openssl is not installed (apt-get install openssl)");
    false
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_openssl_made_rsa_intermediate_signs_verifiable_svids() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("ext.cnf"),
        "[req]\ndistinguished_name=dn\nprompt=no\nx509_extensions=root\n[dn]\nO=Istio\n\
         [root]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n\
         [int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
    )
    .unwrap();
    openssl(d, &["genrsa", "-out", "root-key.pem", "2048"]);
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root-key.pem",
            "-subj",
            "/O=Istio/CN=Root CA",
            "-days",
            "30",
            "-config",
            "ext.cnf",
            "-out",
            "root-cert.pem",
        ],
    );
    openssl(d, &["genrsa", "-traditional", "-out", "ca-key.pem", "2048"]);
    let key = std::fs::read_to_string(d.join("ca-key.pem")).unwrap();
    assert!(
        key.contains("BEGIN RSA PRIVATE KEY"),
        "PKCS#1 like Istio's samples"
    );
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "ca-key.pem",
            "-subj",
            "/O=Istio/CN=Intermediate CA",
            "-config",
            "ext.cnf",
            "-out",
            "ca.csr",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "ca.csr",
            "-CA",
            "root-cert.pem",
            "-CAkey",
            "root-key.pem",
            "-set_serial",
            "2",
            "-days",
            "20",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "int",
            "-out",
            "ca-cert.pem",
        ],
    );
    let chain = std::fs::read_to_string(d.join("ca-cert.pem")).unwrap()
        + &std::fs::read_to_string(d.join("root-cert.pem")).unwrap();
    std::fs::write(d.join("cert-chain.pem"), chain).unwrap();

    let ca = Ca::load_plugged(d, "cluster.local").unwrap();
    let me = SpiffeId::new("cluster.local", "default", "reviews").unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(me.to_string()).unwrap())];
    let csr = params
        .serialize_request(&KeyPair::generate().unwrap())
        .unwrap()
        .pem()
        .unwrap();
    let signed = ca.sign_csr(&csr, &me, Duration::from_secs(3600)).unwrap();
    assert_eq!(signed.pem.len(), 3, "leaf, intermediate, root");
    let ders: Vec<CertificateDer<'static>> = signed
        .pem
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect();
    assert_eq!(
        verify_svid(
            &ders,
            &[ca.root().clone()],
            "cluster.local",
            UnixTime::now()
        )
        .unwrap(),
        me
    );

    std::fs::write(d.join("leaf.pem"), &signed.pem[0]).unwrap();
    std::fs::write(d.join("untrusted.pem"), &signed.pem[1]).unwrap();
    openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root-cert.pem",
            "-untrusted",
            "untrusted.pem",
            "-purpose",
            "sslserver",
            "leaf.pem",
        ],
    );
}
