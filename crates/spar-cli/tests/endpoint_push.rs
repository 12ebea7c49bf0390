//! Endpoint-only changes: when an `Endpoints` file changes and nothing else, a connected
//! proxy gets EDS alone (CDS, LDS and RDS bytes are unchanged, so they are not resent).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use support::*;

const NODE: &str = "sidecar~127.0.0.1~app-1.default~default.svc.cluster.local";
const EDS_NAME: &str = "outbound|9080||reviews.default.svc.cluster.local";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
";

fn endpoints(ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Endpoints
metadata: {{name: reviews, namespace: default}}
subsets:
- addresses: [{{ip: {ip}}}]
  ports: [{{name: http, port: 9080}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_only_change_pushes_eds_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.yaml"), SERVICE).unwrap();
    std::fs::write(dir.path().join("ep.yaml"), endpoints("10.0.0.1")).unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let mut ads = AdsStream::connect(&cp.xds, NODE).await;
    for (t, names) in [
        (CLUSTER, vec![]),
        (ENDPOINT, vec![EDS_NAME]),
        (LISTENER, vec![]),
        (ROUTE, vec!["9080"]),
    ] {
        ads.subscribe_and_ack(t, &names).await;
    }
    std::fs::write(dir.path().join("ep.yaml"), endpoints("10.0.0.2")).unwrap();
    let eds = ads.next().await;
    assert_eq!(
        eds.type_url, ENDPOINT,
        "the first push after the change is EDS"
    );
    assert!(
        eds.resources
            .iter()
            .any(|a| a.value.windows(8).any(|w| w == b"10.0.0.2")),
        "EDS carries the new address"
    );
    ads.ack(&eds).await;
    // Nothing else follows: CDS, LDS and RDS did not change.
    let more = ads.next_within(Duration::from_millis(1500)).await;
    assert!(more.is_none(), "only EDS was pushed, then {more:?}");
}
