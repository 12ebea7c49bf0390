//! The `spar validate` / `spar analyze` contract: exit codes, the one-line error format,
//! standard input, JSON output, directories and `List` kinds.

// A failed read of test data should fail the test where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn spar(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spar"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spar");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const NEGATIVE_WEIGHT: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 110
    - destination:
        host: reviews
        subset: v2
      weight: -10
";

const GOOD: &str = "\
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: reviews
  namespace: prod
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
";

#[test]
fn valid_input_exits_zero() {
    let out = spar(&["validate", "-"], Some(GOOD));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn invalid_input_exits_one_with_file_line_resource_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vs.yaml");
    std::fs::write(&file, NEGATIVE_WEIGHT).unwrap();
    let out = spar(&["validate", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let want = format!(
        "{}:17: VirtualService default/reviews: spec.http[0].route[1].weight: must not be negative (got -10)",
        file.display()
    );
    assert!(
        text.lines().any(|l| l == want),
        "want line:\n{want}\ngot:\n{text}"
    );
}

#[test]
fn directories_are_read_recursively_and_lists_expanded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nested")).unwrap();
    std::fs::write(dir.path().join("nested/dr.yml"), GOOD).unwrap();
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}",
        NEGATIVE_WEIGHT.replace('\n', "\n  ").trim_end()
    );
    std::fs::write(dir.path().join("list.json.yaml"), list).unwrap();
    let out = spar(
        &["validate", "-o", "json", dir.path().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["resources"], 1, "{report}");
    assert_eq!(report["errors"], 1, "{report}");
    let d = &report["diagnostics"][0];
    assert_eq!(d["path"], "spec.http[0].route[1].weight");
    assert_eq!(d["resource"]["kind"], "VirtualService");
    assert_eq!(d["severity"], "error");
}

#[test]
fn json_documents_are_accepted() {
    let json = r#"{"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"selector": {"istio": "ingressgateway"},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}"#;
    let out = spar(&["validate", "-"], Some(json));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn unknown_fields_warn_and_unknown_kinds_fail() {
    let typo = GOOD.replace("  host: reviews", "  host: reviews\n  hostt: x");
    let out = spar(&["validate", "-"], Some(&typo));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("warning: DestinationRule prod/reviews: spec.hostt: unknown field"),
        "{}",
        stdout(&out)
    );

    let out = spar(
        &["validate", "-"],
        Some("apiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: x}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("unknown kind \"Frobnicator\""),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("VirtualService (networking.istio.io)"));
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let out = spar(
        &["validate", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: [\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("-:"), "{}", stdout(&out));
}

#[test]
fn unreadable_path_exits_two() {
    let out = spar(&["validate", "/nonexistent/spar"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/spar"));
}

#[test]
fn analyze_reports_codes_and_exit_status() {
    let missing_gateway = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts: [web.example.com]
  gateways: [no-such-gateway]
  http:
  - route:
    - destination: {host: web.example.com}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: web
spec:
  hosts: [web.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
";
    let out = spar(&["analyze", "-"], Some(missing_gateway));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("[IST0101]"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("spec.gateways[0]"),
        "{}",
        stdout(&out)
    );

    let out = spar(&["analyze", "-o", "json", "-"], Some(missing_gateway));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["diagnostics"][0]["code"], "IST0101");
}

#[test]
fn analyze_of_the_bookinfo_example_has_no_errors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bookinfo");
    let out = spar(&["analyze", dir], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
