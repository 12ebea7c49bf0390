#!/usr/bin/env python3
"""Writes a config directory of N resources (~1 KB each) for the parse benchmark.

A realistic mix: per service a Kubernetes Service and Deployment, a DestinationRule with
subsets, a VirtualService with matches, retries and weighted routes, and every tenth a
ServiceEntry. Files hold ~100 resources each, as a GitOps repository would.
"""
import os
import sys

out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)

def service(i, ns):
    return f"""apiVersion: v1
kind: Service
metadata:
  name: svc-{i}
  namespace: {ns}
  labels: {{app: svc-{i}}}
spec:
  selector: {{app: svc-{i}}}
  ports:
  - name: http
    port: 9080
    targetPort: 9080
"""

def deployment(i, ns):
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-{i}-v1
  namespace: {ns}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: svc-{i}, version: v1}}
  template:
    metadata:
      labels: {{app: svc-{i}, version: v1}}
    spec:
      serviceAccountName: svc-{i}
      containers:
      - name: app
        image: example/app:1.0
        ports:
        - containerPort: 9080
"""

def destination_rule(i, ns):
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  host: svc-{i}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 100, connectTimeout: 2s}}
      http: {{http1MaxPendingRequests: 64, maxRequestsPerConnection: 10}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
"""

def virtual_service(i, ns):
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  hosts: [svc-{i}]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
      uri: {{prefix: /api/v1}}
    route:
    - destination: {{host: svc-{i}, subset: v2}}
  - route:
    - destination: {{host: svc-{i}, subset: v1}}
      weight: 90
    - destination: {{host: svc-{i}, subset: v2}}
      weight: 10
    timeout: 3s
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: "5xx,reset,connect-failure"}}
"""

def service_entry(i, ns):
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ext-{i}
  namespace: {ns}
spec:
  hosts: [api-{i}.example.com]
  location: MESH_EXTERNAL
  ports:
  - number: 443
    name: https
    protocol: TLS
  resolution: DNS
"""

def with_metadata(make):
    """Adds the labels and annotations real manifests carry (GitOps tooling, owners,
    change tickets) so resources weigh ~1 KB, as in a real repository."""
    def wrapped(i, ns):
        text = make(i, ns)
        extra = (
            "  annotations:\n"
            f"    example.com/owner: team-{i % 20}@example.com\n"
            f"    example.com/change-ticket: CHG-{100000 + i}\n"
            "    example.com/runbook: https://runbooks.example.com/services/"
            f"svc-{i}/routing-and-resilience-policy\n"
            f"    argocd.argoproj.io/tracking-id: mesh-config:networking.istio.io/VirtualService:{ns}/svc-{i}\n"
            "    example.com/description: traffic policy managed by the platform team; "
            "change through the mesh-config repository, not by hand\n"
        )
        labels = (
            "  labels:\n"
            f"    app.kubernetes.io/name: svc-{i}\n"
            "    app.kubernetes.io/part-of: storefront\n"
            "    app.kubernetes.io/managed-by: argocd\n"
            f"    team: team-{i % 20}\n"
        )
        head, rest = text.split("metadata:\n", 1)
        lines = rest.split("\n")
        # Keep name/namespace, drop an inline labels line, then add ours.
        kept = [l for l in lines[:2]]
        tail = [l for l in lines[2:] if not l.startswith("  labels:")]
        return head + "metadata:\n" + "\n".join(kept) + "\n" + labels + extra + "\n".join(tail)
    return wrapped


makers = [with_metadata(m) for m in (service, deployment, destination_rule, virtual_service)]
docs = []
i = 0
while len(docs) < n:
    ns = f"team-{i % 20}"
    for make in makers:
        docs.append(make(i, ns))
    if i % 10 == 0:
        docs.append(with_metadata(service_entry)(i, ns))
    i += 1
docs = docs[:n]
per_file = 100
total = 0
for f in range(0, len(docs), per_file):
    text = "---\n".join(docs[f:f + per_file])
    total += len(text)
    with open(os.path.join(out, f"config-{f // per_file:04d}.yaml"), "w") as fh:
        fh.write(text)
print(f"{len(docs)} resources, {total / 1e6:.1f} MB in {out}")
