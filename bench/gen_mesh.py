#!/usr/bin/env python3
"""Writes a mesh for the control-plane bench, and changes one service's endpoints.

  gen_mesh.py gen DIR [SERVICES] [ENDPOINTS]
      SERVICES Kubernetes Services (default 1000) in namespace `default`, each with an
      EndpointSlice of ENDPOINTS ready endpoints (default 10) in its own file
      (DIR/endpoints/svc-NNNN.yaml), as a controller would write them; for every tenth
      service a DestinationRule with subsets and a VirtualService with a header match, a
      weighted split, retries and a timeout. Services carry the labels and annotations real
      manifests do (~1 KB each).

  gen_mesh.py change DIR SERVICE CHANGE
      Rewrites service SERVICE's EndpointSlice so its first endpoint moves to a new address
      derived from CHANGE, atomically (written beside DIR, then renamed into it), and prints
      `IP UNIX_NANOS`: the new address and the time the rename returned.
"""
import os
import sys
import time

NS = "default"
PORT = 80
TARGET_PORT = 8080


def name(i):
    return f"svc-{i:04d}"


def service(i):
    n = name(i)
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {n}
  namespace: {NS}
  labels:
    app: {n}
    app.kubernetes.io/name: {n}
    app.kubernetes.io/part-of: storefront
    app.kubernetes.io/managed-by: argocd
    team: team-{i % 20}
  annotations:
    example.com/owner: team-{i % 20}@example.com
    example.com/runbook: https://runbooks.example.com/services/{n}
    argocd.argoproj.io/tracking-id: mesh:/Service:{NS}/{n}
spec:
  selector:
    app: {n}
  ports:
  - name: http
    port: {PORT}
    targetPort: {TARGET_PORT}
    protocol: TCP
"""


def endpoint_ip(i, e):
    k = i * 16 + e
    return f"10.{(k >> 16) & 63}.{(k >> 8) & 255}.{k & 255}"


def endpoint_slice(i, endpoints, first_ip=None):
    n = name(i)
    eps = []
    for e in range(endpoints):
        ip = first_ip if (e == 0 and first_ip) else endpoint_ip(i, e)
        eps.append(f"""- addresses: ["{ip}"]
  conditions: {{ready: true}}
  nodeName: node-{(i + e) % 50}
  zone: zone-{e % 3}
""")
    return f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {n}-abcde
  namespace: {NS}
  labels:
    kubernetes.io/service-name: {n}
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
addressType: IPv4
ports:
- name: http
  port: {TARGET_PORT}
  protocol: TCP
endpoints:
""" + "".join(eps)


def destination_rule(i):
    n = name(i)
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {n}
  namespace: {NS}
spec:
  host: {n}
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


def virtual_service(i):
    n = name(i)
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {n}
  namespace: {NS}
spec:
  hosts: [{n}]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
      uri: {{prefix: /api/v1}}
    route:
    - destination: {{host: {n}, subset: v2}}
  - route:
    - destination: {{host: {n}, subset: v1}}
      weight: 90
    - destination: {{host: {n}, subset: v2}}
      weight: 10
    timeout: 3s
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: "5xx,reset,connect-failure"}}
"""


def write(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def gen(out, services, endpoints):
    os.makedirs(os.path.join(out, "endpoints"), exist_ok=True)
    per_file = 100
    for f in range(0, services, per_file):
        idx = range(f, min(f + per_file, services))
        write(os.path.join(out, f"services-{f // per_file:02d}.yaml"),
              "---\n".join(service(i) for i in idx))
        routed = [i for i in idx if i % 10 == 0]
        write(os.path.join(out, f"traffic-{f // per_file:02d}.yaml"),
              "---\n".join(destination_rule(i) + "---\n" + virtual_service(i) for i in routed))
    for i in range(services):
        write(os.path.join(out, "endpoints", f"{name(i)}.yaml"), endpoint_slice(i, endpoints))
    with open(os.path.join(out, ".endpoints-per-service"), "w") as fh:
        fh.write(str(endpoints))
    print(f"{services} services x {endpoints} endpoints, {services // 10} VirtualServices "
          f"and DestinationRules in {out}", file=sys.stderr)


def change(out, i, k):
    endpoints = int(open(os.path.join(out, ".endpoints-per-service")).read())
    ip = f"10.{64 + ((k >> 16) & 63)}.{(k >> 8) & 255}.{k & 255}"
    final = os.path.join(out, "endpoints", f"{name(i)}.yaml")
    # Beside the watched directory (same file system), so only the rename is seen.
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{name(i)}.tmp")
    write(tmp, endpoint_slice(i, endpoints, first_ip=ip))
    os.rename(tmp, final)
    print(ip, time.time_ns())


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "gen" and len(sys.argv) >= 3:
        gen(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000,
            int(sys.argv[4]) if len(sys.argv) > 4 else 10)
    elif cmd == "change" and len(sys.argv) == 5:
        change(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
