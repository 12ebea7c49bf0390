//! Registry tests: bookinfo, ServiceEntries, endpoint sources, visibility.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use spar_model::{ConfigSet, LoadOptions};

use super::*;

const BOOKINFO: &str = include_str!(
    "../../../testdata/istio-reference/istio-samples/bookinfo/platform/kube/bookinfo.yaml"
);

fn registry(texts: &[&str]) -> Registry {
    let names: Vec<String> = (0..texts.len()).map(|i| format!("f{i}.yaml")).collect();
    let set = ConfigSet::load(
        names.iter().map(String::as_str).zip(texts.iter().copied()),
        &LoadOptions::default(),
    );
    assert!(!set.has_errors(), "{:?}", set.diagnostics());
    Registry::build(&set)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn bookinfo_services_hostnames_ports() {
    let r = registry(&[BOOKINFO]);
    let hosts: Vec<&str> = r.services().map(|s| s.hostname.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "details.default.svc.cluster.local",
            "productpage.default.svc.cluster.local",
            "ratings.default.svc.cluster.local",
            "reviews.default.svc.cluster.local",
        ]
    );
    for form in [
        "reviews",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
    ] {
        let s = r.lookup(form, "default").unwrap();
        assert_eq!(s.hostname, "reviews.default.svc.cluster.local", "{form}");
    }
    // The short name is a search-path name: only from the service's own namespace.
    assert!(r.lookup("reviews", "other").is_none());
    assert!(r.lookup("reviews.default", "other").is_some());
    let reviews = r.lookup("reviews", "default").unwrap();
    assert_eq!(reviews.ports.len(), 1);
    assert_eq!(reviews.ports[0].port, 9080);
    assert_eq!(reviews.ports[0].protocol, Protocol::Http);
    assert_eq!(reviews.resolution, Resolution::ClientSideLb);
}

#[test]
fn bookinfo_endpoints_from_deployments_with_synthetic_ips() {
    let r = registry(&[BOOKINFO]);
    let reviews = r.lookup("reviews", "default").unwrap();
    // reviews-v1, v2, v3: one replica each.
    assert_eq!(reviews.endpoints.len(), 3);
    for e in &reviews.endpoints {
        assert!(e.synthetic);
        assert!(e.address.starts_with("240."), "{}", e.address);
        assert_eq!(e.ports.get(&9080), Some(&9080));
        assert_eq!(e.service_account, "bookinfo-reviews");
        assert!(e.has_sidecar);
    }
    let v2 = labels(&[("version", "v2")]);
    let subset: Vec<_> = reviews.endpoints_for(9080, &v2).collect();
    assert_eq!(subset.len(), 1);
    assert_eq!(subset[0].0.workload, "reviews-v2");
    // Same config, same addresses.
    assert_eq!(r, registry(&[BOOKINFO]));
}

#[test]
fn replicas_give_one_endpoint_each_and_named_target_ports_resolve() {
    let r = registry(&[r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: web}
  - {name: grpc-api, port: 81, targetPort: 9000, appProtocol: tcp}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {sidecar.istio.io/inject: "false"}
    spec:
      containers:
      - name: web
        ports: [{name: web, containerPort: 8080}]
"#]);
    let s = r.lookup("web.shop", "default").unwrap();
    assert_eq!(s.endpoints.len(), 3);
    assert!(s.endpoints.iter().all(|e| !e.has_sidecar));
    assert!(s.endpoints.iter().all(|e| e.ports.get(&80) == Some(&8080)));
    assert!(s.endpoints.iter().all(|e| e.ports.get(&81) == Some(&9000)));
    assert_eq!(s.port(81).unwrap().protocol, Protocol::Tcp);
}

#[test]
fn real_addresses_from_endpoint_slices_and_pods() {
    let r = registry(&[r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-abc
  namespace: default
  labels: {kubernetes.io/service-name: api}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.7]
  zone: us-east-1a
  targetRef: {kind: Pod, name: api-1}
- addresses: [10.0.0.8]
  conditions: {ready: false}
---
apiVersion: v1
kind: Pod
metadata:
  name: api-1
  namespace: default
  labels: {app: api, version: v1}
spec:
  serviceAccountName: api-sa
  containers: [{name: api}]
status: {podIP: 10.0.0.7}
"#]);
    let s = r.lookup("api", "default").unwrap();
    assert_eq!(s.endpoints.len(), 1, "not-ready endpoints are left out");
    let e = &s.endpoints[0];
    assert_eq!(e.address, "10.0.0.7");
    assert_eq!(e.ports.get(&80), Some(&8080));
    assert_eq!(e.service_account, "api-sa");
    assert_eq!(e.labels.get("version").unwrap(), "v1");
    assert!(!e.synthetic);
}

#[test]
fn an_endpoint_takes_its_labels_from_the_pod_it_names_not_another_at_its_address() {
    let mut text = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: default}\nspec:\n  selector: {app: echo}\n  ports: [{name: http, port: 80}]\n",
    );
    for (v, port) in [("v1", 9001), ("v2", 9002)] {
        text.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: echo-{v}, namespace: default, labels: {{kubernetes.io/service-name: echo}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n- addresses: [10.0.0.9]\n  targetRef: {{kind: Pod, name: echo-{v}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: echo-{v}, namespace: default, labels: {{app: echo, version: {v}}}}}\nspec: {{containers: [{{name: echo}}]}}\nstatus: {{podIP: 10.0.0.9}}\n"
        ));
    }
    let r = registry(&[&text]);
    let s = r.lookup("echo", "default").unwrap();
    let by_port: BTreeMap<u32, String> = s
        .endpoints
        .iter()
        .map(|e| (e.ports[&80], e.labels["version"].clone()))
        .collect();
    assert_eq!(
        by_port,
        BTreeMap::from([(9001, "v1".to_string()), (9002, "v2".to_string())])
    );
}

#[test]
fn endpoints_object_is_read_when_there_are_no_slices() {
    let r = registry(&[r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  ports: [{name: tcp-pg, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: default}
subsets:
- addresses: [{ip: 192.168.1.5}, {ip: 192.168.1.4}]
  ports: [{name: tcp-pg, port: 5432}]
"#]);
    let s = r.lookup("db", "default").unwrap();
    let addrs: Vec<&str> = s.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addrs, ["192.168.1.4", "192.168.1.5"]);
    assert_eq!(s.ports[0].protocol, Protocol::Tcp);
}

const ENTRIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-api, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static-db, namespace: data}
spec:
  hosts: [db.internal]
  addresses: [10.9.0.0/24]
  location: MESH_INTERNAL
  exportTo: ["."]
  ports: [{number: 3306, name: mysql, protocol: MYSQL, targetPort: 13306}]
  resolution: STATIC
  endpoints:
  - {address: 10.9.0.2, labels: {version: a, security.istio.io/tlsMode: istio}, locality: eu/west/1, weight: 3}
  - {address: 10.9.0.1, ports: {mysql: 3307}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: anything, namespace: default}
spec:
  hosts: ["*.wiki.org"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: vm}
spec:
  hosts: [legacy.vm.svc]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: http}]
  resolution: STATIC
  workloadSelector: {labels: {app: legacy}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: vm}
spec:
  address: 172.16.0.9
  labels: {app: legacy}
  serviceAccount: legacy-sa
  ports: {http: 18080}
"#;

#[test]
fn service_entry_dns_gets_its_host_as_endpoint() {
    let r = registry(&[ENTRIES]);
    let s = r.lookup("api.example.com", "anywhere").unwrap();
    assert_eq!(s.resolution, Resolution::DnsLb);
    assert!(s.mesh_external);
    assert_eq!(s.ports[0].protocol, Protocol::Tls);
    assert_eq!(s.endpoints.len(), 1);
    assert_eq!(s.endpoints[0].address, "api.example.com");
    assert!(!s.endpoints[0].has_sidecar);
}

#[test]
fn service_entry_static_endpoints_ports_and_export_to() {
    let r = registry(&[ENTRIES]);
    assert!(r.lookup("db.internal", "default").is_none(), "exportTo: .");
    let s = r.lookup("db.internal", "data").unwrap();
    assert_eq!(s.resolution, Resolution::ClientSideLb);
    assert!(!s.mesh_external);
    assert_eq!(s.addresses, ["10.9.0.0/24"]);
    let e1 = &s.endpoints[0];
    let e2 = &s.endpoints[1];
    assert_eq!((e1.address.as_str(), e1.ports[&3306]), ("10.9.0.1", 3307));
    assert_eq!((e2.address.as_str(), e2.ports[&3306]), ("10.9.0.2", 13306));
    assert_eq!((e2.weight, e2.locality.as_str()), (3, "eu/west/1"));
    assert!(e2.has_sidecar && !e1.has_sidecar);
    let visible: Vec<&str> = r
        .services_visible_to("default")
        .map(|s| s.hostname.as_str())
        .collect();
    assert_eq!(visible, ["*.wiki.org", "api.example.com", "legacy.vm.svc"]);
}

#[test]
fn service_entry_none_and_workload_selector() {
    let r = registry(&[ENTRIES]);
    let wiki = r.lookup("*.wiki.org", "default").unwrap();
    assert_eq!(wiki.resolution, Resolution::Passthrough);
    assert!(wiki.endpoints.is_empty());
    let legacy = r.lookup("legacy.vm.svc", "vm").unwrap();
    assert_eq!(legacy.endpoints.len(), 1);
    let e = &legacy.endpoints[0];
    assert_eq!((e.address.as_str(), e.ports[&8080]), ("172.16.0.9", 18080));
    assert_eq!(e.service_account, "legacy-sa");
    assert!(e.has_sidecar);
    assert_eq!(legacy.port(8080).unwrap().protocol, Protocol::Http);
}

#[test]
fn export_to_annotation_on_kubernetes_services() {
    let r = registry(&[r#"
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: team
  annotations: {networking.istio.io/exportTo: "., ops"}
spec:
  ports: [{port: 80}]
"#]);
    assert!(r.lookup("private.team", "team").is_some());
    assert!(r.lookup("private.team", "ops").is_some());
    assert!(r.lookup("private.team", "default").is_none());
    let s = r.lookup("private.team", "team").unwrap();
    assert_eq!(s.ports[0].protocol, Protocol::Unsupported);
}

#[test]
fn synthetic_ips_do_not_depend_on_other_workloads() {
    let a = workload::synthetic_ip("default", "Deployment", "reviews-v1", 0);
    assert_eq!(a >> 24, 240);
    assert_eq!(
        a,
        workload::synthetic_ip("default", "Deployment", "reviews-v1", 0)
    );
    assert_ne!(
        a,
        workload::synthetic_ip("default", "Deployment", "reviews-v1", 1)
    );
}

#[test]
fn services_of_workload_by_selector() {
    let r = registry(&[BOOKINFO]);
    let l = labels(&[("app", "productpage"), ("version", "v1")]);
    let names: Vec<&str> = r
        .services_of_workload("default", &l)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["productpage"]);
}

#[test]
fn external_name_and_headless_services() {
    let r = registry(&[r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: db.example.com
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: stateful, namespace: default}
spec:
  clusterIP: None
  selector: {app: stateful}
  ports: [{name: http, port: 80}]
"#]);
    let ext = r.lookup("ext", "default").unwrap();
    assert_eq!(ext.resolution, Resolution::DnsLb);
    assert_eq!(ext.endpoints[0].address, "db.example.com");
    assert_eq!(ext.endpoints[0].ports[&5432], 5432);
    let headless = r.lookup("stateful", "default").unwrap();
    assert_eq!(headless.resolution, Resolution::Passthrough);
    assert!(headless.addresses.is_empty());
}

#[test]
fn locality_from_topology_labels() {
    let r = registry(&[r#"
apiVersion: v1
kind: Service
metadata: {name: geo, namespace: default}
spec:
  selector: {app: geo}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: geo-1
  namespace: default
  labels: {app: geo, topology.kubernetes.io/region: eu, topology.kubernetes.io/zone: eu-1a}
spec: {containers: [{name: geo}]}
status: {podIP: 10.1.1.1}
"#]);
    let s = r.lookup("geo", "default").unwrap();
    assert_eq!(s.endpoints[0].locality, "eu/eu-1a/");
    assert_eq!(s.endpoints[0].address, "10.1.1.1");
}

#[test]
fn an_endpoint_change_rebuilds_only_its_service_and_equals_a_full_build() {
    let text = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: default}}\n\
             spec: {{selector: {{app: a}}, ports: [{{name: http, port: 80}}]}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: b, namespace: default}}\n\
             spec: {{selector: {{app: b}}, ports: [{{name: http, port: 80}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: a-1, namespace: default, labels: {{kubernetes.io/service-name: a}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [\"{ip}\"]}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: b-1, namespace: default, labels: {{kubernetes.io/service-name: b}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [10.0.9.9]}}]\n"
        )
    };
    let load = |t: &str| ConfigSet::load([("m.yaml", t)], &LoadOptions::default());
    let (old_cfg, new_cfg) = (load(&text("10.0.0.1")), load(&text("10.0.0.2")));
    let old = Registry::build(&old_cfg);
    let changed = [("default".to_string(), "a".to_string())].into();
    let next = old.with_endpoints_of(&new_cfg, &changed);
    assert_eq!(next, Registry::build(&new_cfg));
    let differing = old.differing_services(&next).unwrap();
    assert_eq!(differing.len(), 1);
    assert_eq!(differing[0].1.name, "a");
    assert_eq!(differing[0].1.endpoints[0].address, "10.0.0.2");
    assert_eq!(old.differing_services(&old).unwrap().len(), 0);
}
