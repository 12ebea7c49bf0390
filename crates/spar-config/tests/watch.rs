//! The watched config directory: edits apply, a broken file keeps its last good version in
//! force and is reported, a fix applies, a removal removes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use spar_config::{watch_dir, FileStore, Update, WatchOptions};
use spar_model::LoadOptions;

fn vs(name: &str, weight: i32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination:\n        host: {name}\n      weight: {weight}\n"
    )
}

fn names(u: &Update) -> Vec<String> {
    let mut v: Vec<String> = u
        .config
        .resources()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    v.sort();
    v
}

/// Waits (with a deadline) for an update that satisfies `pred`; editors and `fs::write`
/// may produce intermediate versions, so earlier updates are skipped.
fn wait_for(rx: &mpsc::Receiver<Update>, what: &str, pred: impl Fn(&Update) -> bool) -> Update {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(u) if pred(&u) => return u,
            Ok(_) => continue,
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

#[test]
fn edit_break_fix_remove() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    write(dir.path(), "a.yaml", &vs("reviews", 100));
    write(dir.path(), "nested/b.yaml", &vs("ratings", 100));
    let (tx, rx) = mpsc::channel();
    let opts = WatchOptions {
        debounce: Duration::from_millis(20),
        ..Default::default()
    };
    let (_w, initial) = watch_dir(dir.path(), opts, move |u| {
        let _ = tx.send(u);
    })
    .unwrap();
    assert_eq!(names(&initial), ["ratings", "reviews"]);
    assert!(initial.bad_files.is_empty());

    write(dir.path(), "a.yaml", &vs("reviews2", 100));
    wait_for(&rx, "the edit", |u| names(u) == ["ratings", "reviews2"]);

    write(dir.path(), "a.yaml", &vs("reviews3", -10));
    let u = wait_for(&rx, "the broken file reported", |u| !u.bad_files.is_empty());
    assert_eq!(
        names(&u),
        ["ratings", "reviews2"],
        "last good version stays in force"
    );
    let (file, errors) = u.bad_files.iter().next().unwrap();
    assert!(file.ends_with("a.yaml"), "{file}");
    assert!(
        errors.iter().any(|d| d.message.contains("negative")),
        "{errors:?}"
    );

    write(dir.path(), "a.yaml", &vs("reviews3", 100));
    let u = wait_for(&rx, "the fix", |u| names(u) == ["ratings", "reviews3"]);
    assert!(u.bad_files.is_empty());

    std::fs::remove_file(dir.path().join("nested/b.yaml")).unwrap();
    wait_for(&rx, "the removal", |u| names(u) == ["reviews3"]);
}

#[test]
fn a_file_that_was_never_good_contributes_nothing_and_good_files_still_load() {
    let mut store = FileStore::new(LoadOptions::default());
    let mixed = format!("{}---\n{}", vs("good-in-bad-file", 100), vs("bad", -1));
    let u = store
        .sync(vec![
            ("a.yaml".to_string(), Ok(vs("reviews", 100))),
            ("b.yaml".to_string(), Ok(mixed.clone())),
        ])
        .unwrap();
    assert_eq!(names(&u), ["reviews"], "a bad file is not half-applied");
    assert_eq!(u.bad_files.keys().collect::<Vec<_>>(), ["b.yaml"]);
    // Nothing changed: no update.
    assert!(store
        .sync(vec![
            ("a.yaml".to_string(), Ok(vs("reviews", 100))),
            ("b.yaml".to_string(), Ok(mixed)),
        ])
        .is_none());
}
