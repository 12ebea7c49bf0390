//! Bench (not a test): how many CSRs the CA signs per second on the calling thread.
//!
//! Pre-generates ECDSA P-256 CSRs, then times `Ca::sign_csr` (CSR parse + signature check +
//! SAN authorization + leaf build + ECDSA sign) and, separately, the full service path with
//! bearer-token authentication and `verify_svid` of a signed chain. `bench/ca-sign.sh` runs
//! it pinned to one core beside openssl.
//!
//! Usage: `ca_sign [COUNT]` (default 20000). Prints `key=value` lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rcgen::string::Ia5String;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use spar_ca::proto::IstioCertificateRequest;
use spar_ca::{verify_svid, Ca, CaService, Caller, SpiffeId, StaticTokens, TtlPolicy};
use tonic::metadata::MetadataMap;

const TD: &str = "cluster.local";
/// Distinct keys; CSRs beyond this reuse them (signing cost does not depend on the key).
const KEYS: usize = 500;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("COUNT must be a number"))
        .unwrap_or(20_000);
    let ca = std::sync::Arc::new(Ca::generate(TD).unwrap());
    let id = SpiffeId::new(TD, "default", "bench").unwrap();
    let csrs: Vec<String> = (0..KEYS)
        .map(|_| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::default();
            p.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id.to_string()).unwrap())];
            p.serialize_request(&key).unwrap().pem().unwrap()
        })
        .collect();
    let ttl = Duration::from_secs(24 * 3600);

    // Parsing and checking a CSR's own signature, alone.
    let start = Instant::now();
    for i in 0..count {
        spar_ca::csr::VerifiedCsr::from_pem(&csrs[i % KEYS]).unwrap();
    }
    let csr_rate = count as f64 / start.elapsed().as_secs_f64();

    // Warm up, then time sign_csr alone.
    for csr in csrs.iter().take(100) {
        ca.sign_csr(csr, &id, ttl).unwrap();
    }
    let start = Instant::now();
    let mut last = None;
    for i in 0..count {
        last = Some(ca.sign_csr(&csrs[i % KEYS], &id, ttl).unwrap());
    }
    let sign_rate = count as f64 / start.elapsed().as_secs_f64();

    // The whole service path: token authentication + TTL policy + signing.
    let mut tokens = StaticTokens::new();
    tokens.insert("bench-token", id.clone());
    let svc = CaService::new(ca.clone(), Box::new(tokens), TtlPolicy::default());
    let mut md = MetadataMap::new();
    md.insert("authorization", "Bearer bench-token".parse().unwrap());
    let caller = Caller {
        metadata: &md,
        peer_certs: None,
    };
    let reqs: Vec<IstioCertificateRequest> = csrs
        .iter()
        .map(|csr| IstioCertificateRequest {
            csr: csr.clone(),
            validity_duration: 0,
            metadata: None,
        })
        .collect();
    let start = Instant::now();
    for i in 0..count {
        svc.create_certificate(&caller, &reqs[i % KEYS]).unwrap();
    }
    let service_rate = count as f64 / start.elapsed().as_secs_f64();

    // Verifying an SVID chain (what each side of an mTLS handshake adds).
    let chain: Vec<CertificateDer<'static>> = last
        .unwrap()
        .pem
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect();
    let roots = [ca.root().clone()];
    let start = Instant::now();
    for _ in 0..count {
        verify_svid(&chain, &roots, TD, UnixTime::now()).unwrap();
    }
    let verify_rate = count as f64 / start.elapsed().as_secs_f64();

    println!("count={count}");
    println!("csr_check_per_sec={csr_rate:.0}");
    println!("sign_csr_per_sec={sign_rate:.0}");
    println!("service_per_sec={service_rate:.0}");
    println!("verify_svid_per_sec={verify_rate:.0}");
}
