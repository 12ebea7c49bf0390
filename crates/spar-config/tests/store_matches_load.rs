//! Whatever sequence of edits, additions, removals and bad edits a directory goes through,
//! the store's cached, incremental config equals a fresh `ConfigSet::load` of each file's
//! last good text: same resources in the same order, same diagnostics, same bad files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use spar_config::{FileStore, Update};
use spar_model::{ConfigSet, LoadOptions};

/// A small deterministic generator (xorshift64*), so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

const FILES: &[&str] = &[
    "a.yaml",
    "b.yaml",
    "c/d.yaml",
    "c/e.yml",
    "mesh.yaml",
    "z.json",
];

/// Texts that exercise what assembling does across files: duplicates (same names in
/// several files), the mesh config (file and ConfigMap, good and bad), the 2019 APIs,
/// warnings, and errors of every stage.
fn text(rng: &mut Rng, file: &str) -> String {
    let name = ["reviews", "ratings", "details"][rng.below(3)];
    let weight = [100, 100, 100, -5][rng.below(4)];
    if file == "mesh.yaml" {
        return [
            "rootNamespace: mesh-root\n",
            "defaultConfig:\n  concurrency: 2\nunknownKey: 1\n",
            "rootNamespace: [not, a, string]\n",
            "accessLogFile: /dev/stdout\n",
        ][rng.below(4)]
        .to_string();
    }
    if file == "z.json" {
        return format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"ports":[{{"port":{}}}]}}}}"#,
            [9080, 80, 0][rng.below(3)]
        );
    }
    match rng.below(7) {
        0 => format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination:\n        host: {name}\n      weight: {weight}\n"
        ),
        1 => format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: {name}\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n  unknownField: 1\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 9080, name: http}}]\n"
        ),
        2 => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    rootNamespace: {}\n",
            ["cm-root", "[bad]"][rng.below(2)]
        ),
        3 => format!(
            "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata:\n  name: {name}-mtls\n  namespace: default\nspec:\n  targets:\n  - name: {name}.default.svc.cluster.local\n  peers:\n  - mtls:\n      mode: STRICT\n"
        ),
        4 => "apiVersion: networking.istio.io/v1\nkind: [broken\n".to_string(),
        5 => format!("apiVersion: networking.istio.io/v1\nkind: Nonsense\nmetadata: {{name: {name}}}\n"),
        _ => String::new(),
    }
}

/// The model: each file's last text that had no error when loaded alone.
fn expected(good: &BTreeMap<String, String>, drop_trees: bool) -> ConfigSet {
    let mut set = ConfigSet::load(
        good.iter().map(|(n, t)| (n.as_str(), t.as_str())),
        &LoadOptions::default(),
    );
    if drop_trees {
        set.drop_source_trees();
    }
    set
}

fn check(step: usize, u: &Update, good: &BTreeMap<String, String>, bad: &[String], drop: bool) {
    let mut got = u.config.resources().to_vec();
    let want = expected(good, drop);
    if drop {
        // The store keeps the trees assembling reads (the istio ConfigMap); compare bodies.
        for r in &mut got {
            std::sync::Arc::make_mut(r).drop_source_tree();
        }
    }
    assert_eq!(got, want.resources(), "step {step}: resources");
    assert_eq!(
        u.config.diagnostics(),
        want.diagnostics(),
        "step {step}: diagnostics"
    );
    assert_eq!(u.config.mesh(), want.mesh(), "step {step}: mesh");
    let bad_now: Vec<&String> = u.bad_files.keys().collect();
    let bad_want: Vec<&String> = bad.iter().collect();
    assert_eq!(bad_now, bad_want, "step {step}: bad files");
}

fn is_good(name: &str, text: &str) -> bool {
    !ConfigSet::load([(name, text)], &LoadOptions::default()).has_errors()
}

/// Updates the model's good texts from the files present now; returns the bad files.
fn settle(present: &BTreeMap<String, String>, good: &mut BTreeMap<String, String>) -> Vec<String> {
    good.retain(|n, _| present.contains_key(n));
    let mut bad = Vec::new();
    for (n, t) in present {
        if is_good(n, t) {
            good.insert(n.clone(), t.clone());
        } else {
            bad.push(n.clone());
        }
    }
    bad
}

fn run(seed: u64, drop_trees: bool) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("c")).unwrap();
    let name_of = |f: &str| root.join(f).display().to_string();
    let mut rng = Rng(seed);
    let mut store = FileStore::new(LoadOptions::default());
    if drop_trees {
        store = store.dropping_source_trees();
    }
    // Per file: last text written and last good text.
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut good: BTreeMap<String, String> = BTreeMap::new();
    for step in 0..60 {
        for _ in 0..1 + rng.below(3) {
            let file = FILES[rng.below(FILES.len())];
            let path = root.join(file);
            let name = name_of(file);
            if rng.below(5) == 0 {
                let _ = std::fs::remove_file(&path);
                written.remove(&name);
                continue;
            }
            let t = text(&mut rng, file);
            write_file(&path, &t, rng.below(2) == 0);
            written.insert(name, t);
        }
        // The store sees the directory as it is when it syncs: a file removed and written
        // again between two syncs was edited.
        let bad = settle(&written, &mut good);
        let u = match store.sync_dir(root).unwrap() {
            Some(u) => u,
            None => store.in_force(),
        };
        check(step, &u, &good, &bad, drop_trees);
    }
}

/// Writes in place or by atomic rename, as editors and controllers do.
fn write_file(path: &Path, text: &str, rename: bool) {
    if rename {
        let tmp = path.with_file_name(".tmp-write");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn the_store_equals_a_fresh_load_of_the_good_texts() {
    for seed in 1..=8 {
        run(0x9E37_79B9_7F4A_7C15 ^ seed, false);
    }
}

#[test]
fn the_store_equals_a_fresh_load_when_it_drops_source_trees() {
    for seed in 1..=4 {
        run(0xD1B5_4A32_D192_ED03 ^ seed, true);
    }
}

#[test]
fn texts_given_directly_equal_a_fresh_load() {
    let mut rng = Rng(42);
    let mut store = FileStore::new(LoadOptions::default());
    let mut good: BTreeMap<String, String> = BTreeMap::new();
    let mut present: BTreeMap<String, String> = BTreeMap::new();
    for step in 0..80 {
        let file = FILES[rng.below(FILES.len())].to_string();
        if rng.below(5) == 0 {
            present.remove(&file);
        } else {
            let t = text(&mut rng, &file);
            present.insert(file, t);
        }
        let bad = settle(&present, &mut good);
        let reads = present
            .iter()
            .map(|(n, t)| (n.clone(), Ok(t.clone())))
            .collect();
        let u = store.sync(reads).unwrap_or_else(|| store.in_force());
        check(step, &u, &good, &bad, false);
    }
}
