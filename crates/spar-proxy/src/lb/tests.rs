use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::cluster::{HostAddr, Limits, Outlier};

fn cluster(lb: LbKind, outlier: Option<Outlier>) -> Arc<Cluster> {
    Arc::new(Cluster {
        name: "c".into(),
        discovery: Discovery::Eds,
        eds_service_name: "c".into(),
        lb,
        connect_timeout: Duration::from_secs(1),
        http2: false,
        limits: Limits::default(),
        outlier,
        inline_hosts: None,
        tls: None,
        tls_matches: Vec::new(),
    })
}

fn hosts(weights: &[u32]) -> Vec<Locality> {
    vec![Locality {
        name: String::new(),
        priority: 0,
        weight: 0,
        hosts: weights
            .iter()
            .enumerate()
            .map(|(i, w)| HostAddr {
                hostname: format!("10.0.0.{}", i + 1),
                port: 80,
                weight: *w,
                healthy: true,
                tls_match: Vec::new(),
            })
            .collect(),
    }]
}

fn counts(lb: &ClusterLb, n: usize, ctx: impl Fn(usize) -> PickCtx) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let h = lb.pick(&ctx(i)).unwrap();
        *out.entry(h.authority.clone()).or_default() += 1;
    }
    out
}

#[test]
fn round_robin_equal_and_weighted() {
    let lb = ClusterLb::new(cluster(LbKind::RoundRobin, None), &hosts(&[1, 1, 1]));
    let c = counts(&lb, 300, |_| PickCtx::default());
    assert!(c.values().all(|v| *v == 100), "{c:?}");
    let lb = ClusterLb::new(cluster(LbKind::RoundRobin, None), &hosts(&[3, 1]));
    let c = counts(&lb, 400, |_| PickCtx::default());
    assert_eq!(c["10.0.0.1:80"], 300, "{c:?}");
    assert_eq!(c["10.0.0.2:80"], 100);
}

#[test]
fn least_request_avoids_the_busy_host() {
    let lb = ClusterLb::new(cluster(LbKind::LeastRequest, None), &hosts(&[1, 1]));
    lb.hosts[0].active.store(50, Ordering::Relaxed);
    let c = counts(&lb, 400, |_| PickCtx::default());
    // Two random choices: the busy host wins only when both choices are it (~1/4).
    let busy = c.get("10.0.0.1:80").copied().unwrap_or(0);
    assert!(busy < 160, "{c:?}");
}

#[test]
fn random_is_weighted() {
    let lb = ClusterLb::new(cluster(LbKind::Random, None), &hosts(&[9, 1]));
    let c = counts(&lb, 4000, |_| PickCtx::default());
    let heavy = c["10.0.0.1:80"];
    assert!((3400..3800).contains(&heavy), "{c:?}");
}

#[test]
fn consistent_hashing_is_sticky_and_matches_the_ring() {
    for kind in [
        LbKind::RingHash {
            min_size: 1024,
            max_size: 8 << 20,
        },
        LbKind::Maglev { table_size: 65537 },
    ] {
        let lb = ClusterLb::new(cluster(kind, None), &hosts(&[1, 1, 1, 1]));
        let mut seen = BTreeMap::new();
        for key in 0..200u64 {
            let hash = xxhash::xxhash64(format!("user-{key}").as_bytes(), 0);
            let ctx = PickCtx {
                hash: Some(hash),
                ..Default::default()
            };
            let a = lb.pick(&ctx).unwrap().authority.clone();
            let b = lb.pick(&ctx).unwrap().authority.clone();
            assert_eq!(a, b, "{kind:?}");
            *seen.entry(a).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 4, "{kind:?} spreads keys: {seen:?}");
    }
    // The ring point named `10.0.0.3:80_0` is owned by host 3: a hash equal to it picks it.
    let lb = ClusterLb::new(
        cluster(
            LbKind::RingHash {
                min_size: 1024,
                max_size: 8 << 20,
            },
            None,
        ),
        &hosts(&[1, 1, 1, 1]),
    );
    let point = xxhash::xxhash64(b"10.0.0.3:80_0", 0);
    let ctx = PickCtx {
        hash: Some(point),
        ..Default::default()
    };
    assert_eq!(lb.pick(&ctx).unwrap().authority, "10.0.0.3:80");
}

#[test]
fn outlier_detection_ejects_and_no_hosts_is_none() {
    let o = Outlier {
        consecutive_5xx: 3,
        consecutive_gateway_failure: None,
        consecutive_local_origin_failure: None,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_percent: 50,
    };
    let lb = ClusterLb::new(cluster(LbKind::RoundRobin, Some(o)), &hosts(&[1, 1, 1, 1]));
    let bad = lb.hosts[1].clone();
    for _ in 0..2 {
        lb.report(&bad, Outcome::Status(503));
    }
    assert!(!lb.is_ejected(&bad));
    lb.report(&bad, Outcome::Status(503));
    assert!(lb.is_ejected(&bad));
    let c = counts(&lb, 300, |_| PickCtx::default());
    assert!(!c.contains_key("10.0.0.2:80"), "{c:?}");
    // A success resets the count for others.
    let other = lb.hosts[2].clone();
    lb.report(&other, Outcome::Status(500));
    lb.report(&other, Outcome::Success);
    lb.report(&other, Outcome::Status(500));
    lb.report(&other, Outcome::Status(500));
    assert!(!lb.is_ejected(&other));

    let empty = ClusterLb::new(cluster(LbKind::RoundRobin, None), &[]);
    assert!(empty.pick(&PickCtx::default()).is_none());
}

#[test]
fn original_destination_uses_the_connection() {
    let mut c = (*cluster(LbKind::ClusterProvided, None)).clone();
    c.discovery = Discovery::OriginalDst;
    let lb = ClusterLb::new(Arc::new(c), &[]);
    let dst: SocketAddr = "10.9.9.9:5432".parse().unwrap();
    let ctx = PickCtx {
        original_dst: Some(dst),
        ..Default::default()
    };
    assert_eq!(lb.pick(&ctx).unwrap().authority, "10.9.9.9:5432");
    assert!(lb.pick(&PickCtx::default()).is_none());
}

#[test]
fn unhealthy_hosts_are_skipped_until_panic() {
    let mut l = hosts(&[1, 1, 1]);
    l[0].hosts[0].healthy = false;
    let lb = ClusterLb::new(cluster(LbKind::RoundRobin, None), &l);
    let c = counts(&lb, 30, |_| PickCtx::default());
    assert!(!c.contains_key("10.0.0.1:80"));
    // Two of three unhealthy: under the 50% panic threshold, every host is used.
    l[0].hosts[1].healthy = false;
    let lb = ClusterLb::new(cluster(LbKind::RoundRobin, None), &l);
    let c = counts(&lb, 30, |_| PickCtx::default());
    assert_eq!(c.len(), 3, "{c:?}");
}
