//! One scenario per finding: the YAML that triggers it, and a near miss that must not.

use spar_model::{ConfigSet, LoadOptions};

use super::analyze;

const WORKLOADS: &str = "
apiVersion: v1
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
    spec:
      serviceAccountName: bookinfo-reviews
      containers: [{name: app, image: x}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingressgateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  template:
    metadata: {labels: {istio: ingressgateway}}
    spec:
      containers: [{name: proxy, image: x}]
";

/// Codes found for `yaml` added to the shared workloads (errors from validation fail the test).
fn codes(yaml: &str) -> Vec<String> {
    let text = format!("{WORKLOADS}\n---\n{yaml}");
    let set = ConfigSet::load([("t.yaml", text.as_str())], &LoadOptions::default());
    let invalid: Vec<_> = set.diagnostics().iter().filter(|d| d.is_error()).collect();
    assert!(
        invalid.is_empty(),
        "scenario does not validate: {invalid:#?}"
    );
    let mut out: Vec<String> = analyze(&set).into_iter().filter_map(|d| d.code).collect();
    out.dedup();
    out
}

struct Case {
    name: &'static str,
    yaml: &'static str,
    want: &'static [&'static str],
}

#[test]
fn findings() {
    let cases = [
        Case {
            name: "routes to a defined subset: clean",
            yaml: "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
",
            want: &[],
        },
        Case {
            name: "unknown subset",
            yaml: "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v9}}]}]
",
            want: &["IST0101"],
        },
        Case {
            name: "unknown destination host",
            yaml: "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings}}]}]
",
            want: &["IST0101"],
        },
        Case {
            name: "unknown gateway",
            yaml: "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: ['*']
  gateways: [missing]
  http: [{route: [{destination: {host: reviews}}]}]
",
            want: &["IST0101"],
        },
        Case {
            name: "gateway selector matches no workload",
            yaml: "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
",
            want: &["IST0101"],
        },
        Case {
            name: "gateway selector matches the ingress workload: clean",
            yaml: "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
",
            want: &[],
        },
        Case {
            name: "subset selects no workload",
            yaml: "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
",
            want: &["IST0173"],
        },
        Case {
            name: "two mesh VirtualServices claim one host",
            yaml: "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews}}]}]
",
            want: &["IST0109"],
        },
        Case {
            name: "two VirtualServices claim one host on one gateway",
            yaml: "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews}}]}]
",
            want: &["SPR0001"],
        },
        Case {
            name: "conflicting gateway servers",
            yaml: "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: a}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [shop.example.com], tls: {mode: SIMPLE, credentialName: shop}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: b}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 443, name: tcp, protocol: TCP}, hosts: ['*']}]
",
            want: &["IST0145"],
        },
        Case {
            name: "service entry address clash",
            yaml: "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db1}
spec:
  hosts: [db1.example.com]
  addresses: [10.9.9.9]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.1.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db2}
spec:
  hosts: [db2.example.com]
  addresses: [10.9.9.9]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.1.2}]
",
            want: &["SPR0002"],
        },
        Case {
            name: "STRICT mTLS against TLS disabled",
            yaml: "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: DISABLE}}
",
            want: &["IST0113"],
        },
        Case {
            name: "PERMISSIVE namespace overrides STRICT mesh: clean",
            yaml: "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: PERMISSIVE}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: DISABLE}}
",
            want: &[],
        },
        Case {
            name: "authorization policy names unknown namespace and service account",
            yaml: "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow}
spec:
  rules:
  - from:
    - source:
        namespaces: [frontend]
        principals: [cluster.local/ns/default/sa/ghost]
",
            want: &["SPR0003"],
        },
        Case {
            name: "authorization policy with known references: clean",
            yaml: "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow}
spec:
  rules:
  - from:
    - source:
        namespaces: [istio-system]
        principals: [cluster.local/ns/default/sa/bookinfo-reviews, 'cluster.local/ns/*/sa/x']
",
            want: &[],
        },
        Case {
            name: "sidecar egress host matches nothing",
            yaml: "
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress: [{hosts: [./reviews.default.svc.cluster.local, ./ratings.default.svc.cluster.local, istio-system/*]}]
",
            want: &["SPR0004"],
        },
        Case {
            name: "gateway-only VirtualService for an in-mesh host",
            yaml: "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews}}]}]
",
            want: &["SPR0005"],
        },
        Case {
            name: "bound to gateway and mesh: clean",
            yaml: "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [gw, mesh]
  http: [{route: [{destination: {host: reviews}}]}]
",
            want: &[],
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let got = codes(case.yaml);
        if got != case.want {
            failures.push(format!("{}: want {:?}, got {got:?}", case.name, case.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_code_is_exercised_by_a_case() {
    let source = include_str!("tests.rs");
    for code in crate::codes::ALL {
        assert!(
            source.contains(&format!("\"{}\"", code.code)),
            "no test case for {}",
            code.code
        );
    }
}

#[test]
fn findings_point_at_file_line_and_field() {
    let yaml = format!("{WORKLOADS}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: v7}}\n");
    let set = ConfigSet::load([("routes.yaml", yaml.as_str())], &LoadOptions::default());
    let d = analyze(&set)
        .into_iter()
        .find(|d| d.code.as_deref() == Some("IST0101"))
        .expect("finding");
    let last_line = u32::try_from(yaml.lines().count()).unwrap();
    assert_eq!(d.file.as_deref(), Some("routes.yaml"));
    assert_eq!(d.line, Some(last_line));
    assert_eq!(
        d.path.unwrap().to_string(),
        "spec.http[0].route[0].destination.subset"
    );
}
