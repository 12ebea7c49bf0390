//! `spar ctl diff`: offline, per proxy, what a new config directory would change. A
//! VirtualService weight change shows as a change of that route configuration only, for
//! the sidecars that route to it, and not for the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::spar;

const BASE: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: default}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {containers: [{name: reviews}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2, namespace: default}
spec:
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec: {containers: [{name: reviews}]}
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: productpage-v1, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  template:
    metadata: {labels: {app: productpage}}
    spec: {containers: [{name: productpage}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: default}
spec:
  hosts: ['*']
  gateways: [web]
  http:
  - route:
    - destination: {host: productpage}
";

fn reviews_vs(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {v1}
    - destination: {{host: reviews, subset: v2}}
      weight: {v2}
"
    )
}

fn dir(vs: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("base.yaml"), BASE).unwrap();
    std::fs::write(d.path().join("vs.yaml"), vs).unwrap();
    d
}

fn diff(old: &tempfile::TempDir, new: &tempfile::TempDir, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "ctl",
        "diff",
        "--config-dir",
        old.path().to_str().unwrap(),
        "--new",
        new.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = spar(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("error"),
        "{out:?}"
    );
    (out.status.code().unwrap(), text)
}

#[test]
fn a_weight_change_changes_only_that_route_for_the_sidecars() {
    let old = dir(&reviews_vs(80, 20));
    let new = dir(&reviews_vs(50, 50));
    let (code, text) = diff(&old, &new, &[]);
    assert_eq!(code, 1, "changes exit 1 like diff:\n{text}");
    // Every sidecar (reviews v1, v2, productpage) routes to reviews: each shows route 9080.
    let proxies: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        proxies.iter().filter(|l| l.starts_with("sidecar~")).count(),
        3,
        "{text}"
    );
    assert!(
        !text.contains("router~"),
        "the gateway does not route to reviews:\n{text}"
    );
    assert!(text.ends_with("3 of 4 proxies would change\n"), "{text}");
    // Only routes change, only the `9080` route configuration, nothing added or removed.
    let sections: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .collect();
    assert!(sections.iter().all(|s| *s == "  routes:"), "{text}");
    let resources: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .collect();
    assert!(resources.iter().all(|r| *r == "    ~ 9080"), "{text}");
    // The summary diff shows the old weights removed and the new ones added.
    assert!(
        text.lines()
            .any(|l| l.starts_with("      -") && l.contains("80")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("      +") && l.contains("50")),
        "{text}"
    );
}

#[test]
fn no_change_exits_0_and_node_ids_narrow_the_proxies() {
    let old = dir(&reviews_vs(80, 20));
    let same = dir(&reviews_vs(80, 20));
    let (code, text) = diff(&old, &same, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text, "0 of 4 proxies would change\n");

    let new = dir(&reviews_vs(50, 50));
    let gw = "router~10.0.0.9~ingress-1.default~default.svc.cluster.local";
    let (code, text) = diff(&old, &new, &["--node-id", gw]);
    assert_eq!(code, 0, "a gateway that does not route to reviews:\n{text}");
    let pp = "sidecar~10.0.0.7~productpage-v1.default~default.svc.cluster.local";
    let (code, text) = diff(&old, &new, &["--node-id", pp]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.starts_with(&format!("{pp}:\n  routes:\n    ~ 9080\n")),
        "{text}"
    );
}
