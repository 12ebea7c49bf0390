//! The one config directory both proxies are served from: a Gateway on a free port, the
//! Services and EndpointSlices of the in-process backends, DestinationRules, and
//! VirtualServices covering every match, rewrite, redirect, direct response, header
//! operation, weighting, hashing, fault, CORS, retry and timeout feature the corpus probes.

/// Backend ports: four echo backends `s0..s3`, one flaky, one slow.
pub struct Ports {
    pub echo: [u16; 4],
    pub flaky: u16,
    pub slow: u16,
}

fn service(name: &str, ports: &[u16]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n---\n"
    );
    for (i, p) in ports.iter().enumerate() {
        y.push_str(&format!(
            r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-{i}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {p}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
"#
        ));
    }
    y
}

fn dest(svc: &str) -> String {
    format!("[{{destination: {{host: {svc}.default.svc.cluster.local, port: {{number: 8080}}}}}}]")
}

/// The whole directory as one YAML stream; `gw` is the gateway listener port.
pub fn yaml(p: &Ports, gw: u16) -> String {
    let mut y = String::new();
    for (i, port) in p.echo.iter().enumerate() {
        y.push_str(&service(&format!("s{i}"), &[*port]));
    }
    y.push_str(&service("hash", &p.echo));
    y.push_str(&service("flaky", &[p.flaky]));
    y.push_str(&service("slow", &[p.slow]));
    let (d0, d1, d2, d3) = (dest("s0"), dest("s1"), dest("s2"), dest("s3"));
    let (hash, flaky, slow) = (dest("hash"), dest("flaky"), dest("slow"));
    y.push_str(&format!(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: hash, namespace: default}}
spec:
  host: hash
  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-t-user, ringHash: {{minimumRingSize: 1024}}}}}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: diff-gw}}
  servers: [{{port: {{number: {gw}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: a, namespace: default}}
spec:
  hosts: [a.example]
  gateways: [istio-system/gw]
  http:
  - match: [{{headers: {{x-t-v: {{exact: "2"}}}}}}]
    route: {d2}
  - match: [{{uri: {{exact: /exact}}}}]
    route: {d1}
  - match: [{{uri: {{regex: "/re/[0-9]+"}}}}]
    route: {d3}
  - match: [{{uri: {{prefix: /case}}, ignoreUriCase: true}}]
    route: {d1}
  - match: [{{uri: {{prefix: /hdr}}, headers: {{x-t-pre: {{prefix: ab}}}}}}]
    route: {d1}
  - match: [{{uri: {{prefix: /hdr}}, headers: {{x-t-re: {{regex: "v[0-9]+"}}}}}}]
    route: {d2}
  - match: [{{uri: {{prefix: /hdr}}, headers: {{x-t-present: {{}}}}}}]
    route: {d3}
  - match: [{{uri: {{prefix: /q}}, queryParams: {{debug: {{exact: "1"}}}}}}, {{uri: {{prefix: /q}}, queryParams: {{v: {{regex: "[0-9]+"}}}}}}]
    route: {d2}
  - match: [{{uri: {{prefix: /m}}, method: {{exact: POST}}}}]
    route: {d3}
  - match: [{{uri: {{prefix: /m}}, method: {{regex: "PUT|DELETE"}}}}]
    route: {d2}
  - match: [{{uri: {{prefix: /only}}, withoutHeaders: {{x-t-skip: {{exact: "yes"}}}}}}]
    route: {d1}
  - match: [{{uri: {{prefix: /api/}}}}]
    rewrite: {{uri: /v2/}}
    route: {d1}
  - match: [{{uri: {{prefix: /rx/}}}}]
    rewrite: {{uriRegexRewrite: {{match: "^/rx/([a-z]+)/(.*)$", rewrite: '/new/\2/\1'}}}}
    route: {d2}
  - match: [{{uri: {{prefix: /auth}}}}]
    rewrite: {{authority: new.example}}
    route: {d3}
  - match: [{{uri: {{prefix: /redirect}}}}]
    redirect: {{uri: /new, authority: b.example, redirectCode: 302}}
  - match: [{{uri: {{prefix: /rd2}}}}]
    redirect: {{uri: /other}}
  - match: [{{uri: {{prefix: /rd3}}}}]
    redirect: {{scheme: https, port: 8443, redirectCode: 308}}
  - match: [{{uri: {{prefix: /rd4}}}}]
    redirect: {{authority: moved.example, uri: /moved}}
  - match: [{{uri: {{prefix: /direct-empty}}}}]
    directResponse: {{status: 204}}
  - match: [{{uri: {{prefix: /direct}}}}]
    directResponse: {{status: 418, body: {{string: "short and stout"}}}}
  - match: [{{uri: {{prefix: /hdrops}}}}]
    headers:
      request: {{set: {{x-t-set: set-by-vs}}, add: {{x-t-add: added-by-vs}}, remove: [x-t-remove]}}
      response: {{set: {{x-t-rset: set-by-vs}}, add: {{x-t-radd: added-by-vs}}, remove: [x-t-bresp]}}
    route: {d0}
  - match: [{{uri: {{prefix: /weighted}}}}]
    route:
    - {{destination: {{host: s1.default.svc.cluster.local, port: {{number: 8080}}}}, weight: 100}}
    - {{destination: {{host: s2.default.svc.cluster.local, port: {{number: 8080}}}}, weight: 0}}
  - match: [{{uri: {{prefix: /hash}}}}]
    route: {hash}
  - match: [{{uri: {{prefix: /fault}}}}]
    fault: {{abort: {{percentage: {{value: 100}}, httpStatus: 418}}}}
    route: {d0}
  - match: [{{uri: {{prefix: /cors}}}}]
    corsPolicy:
      allowOrigins: [{{exact: "https://ok.example"}}, {{prefix: "https://pre."}}]
      allowMethods: [GET, POST]
      allowHeaders: [x-t-h]
      exposeHeaders: [x-t-exposed]
      maxAge: 600s
      allowCredentials: true
    route: {d0}
  - match: [{{uri: {{prefix: /retry}}}}]
    retries: {{attempts: 2, retryOn: 5xx}}
    route: {flaky}
  - match: [{{uri: {{prefix: /noretry}}}}]
    retries: {{attempts: 0}}
    route: {flaky}
  - match: [{{uri: {{prefix: /slow}}}}]
    timeout: 0.3s
    route: {slow}
  - route: {d0}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: b, namespace: default}}
spec:
  hosts: [b.example, c.example]
  gateways: [istio-system/gw]
  http:
  - match: [{{authority: {{prefix: "c."}}}}]
    route: {d2}
  - route: {d3}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: wild, namespace: default}}
spec:
  hosts: ["*.wild.example"]
  gateways: [istio-system/gw]
  http:
  - route: {d1}
"#
    ));
    y
}
