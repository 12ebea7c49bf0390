//! The store's change detection: what is read again, and what is noticed.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

fn vs(name: &str, weight: i32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination:\n        host: {name}\n      weight: {weight}\n"
    )
}

fn names(u: &Update) -> Vec<String> {
    u.config
        .resources()
        .iter()
        .map(|r| r.name().to_string())
        .collect()
}

/// A store that trusts any stamp, however recent, so the stamp alone decides.
fn trusting_store() -> FileStore {
    let mut store = FileStore::new(LoadOptions::default());
    store.racy = Duration::ZERO;
    store
}

fn ctime(path: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.ctime(), m.ctime_nsec())
}

/// Polls until the file system's clock has moved past `path`'s ctime, so that the next
/// change to it gets a different ctime.
fn wait_for_clock_past(dir: &Path, path: &Path) {
    let probe = dir.join(".probe");
    let before = ctime(path);
    for _ in 0..10_000 {
        std::fs::write(&probe, "x").unwrap();
        if ctime(&probe) > before {
            return;
        }
        std::thread::yield_now();
    }
    panic!("the file system clock did not move");
}

#[test]
fn unchanged_files_are_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), vs("a", 100)).unwrap();
    std::fs::write(dir.path().join("b.yaml"), vs("b", 100)).unwrap();
    let mut store = trusting_store();
    let u = store.sync_dir(dir.path()).unwrap().unwrap();
    assert_eq!(names(&u), ["a", "b"]);
    assert_eq!(store.last_sync().read, 2);
    assert!(store.sync_dir(dir.path()).unwrap().is_none());
    assert_eq!(
        store.last_sync(),
        SyncStats {
            files: 2,
            read: 0,
            parsed: 0
        }
    );
}

#[test]
fn a_recently_changed_file_is_read_again_but_not_parsed_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), vs("a", 100)).unwrap();
    let mut store = FileStore::new(LoadOptions::default());
    store.sync_dir(dir.path()).unwrap().unwrap();
    assert!(store.sync_dir(dir.path()).unwrap().is_none());
    let stats = store.last_sync();
    assert_eq!((stats.read, stats.parsed), (1, 0), "racy: read, same text");
}

#[test]
fn a_same_size_rewrite_in_place_is_seen_by_its_ctime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, vs("aaaa", 100)).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut store = trusting_store();
    assert_eq!(
        names(&store.sync_dir(dir.path()).unwrap().unwrap()),
        ["aaaa"]
    );
    wait_for_clock_past(dir.path(), &path);

    // Same inode, same size, same mtime: only ctime tells.
    let mut f = File::options().write(true).open(&path).unwrap();
    f.rewind().unwrap();
    f.write_all(vs("bbbb", 100).as_bytes()).unwrap();
    f.set_modified(old).unwrap();
    drop(f);
    let u = store
        .sync_dir(dir.path())
        .unwrap()
        .expect("the rewrite is seen");
    assert_eq!(names(&u), ["bbbb"]);
    assert_eq!(u.changed, [path.display().to_string()]);
}

#[test]
fn a_same_size_rewrite_in_place_is_seen_by_its_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, vs("aaaa", 100)).unwrap();
    let mut store = trusting_store();
    assert_eq!(
        names(&store.sync_dir(dir.path()).unwrap().unwrap()),
        ["aaaa"]
    );
    wait_for_clock_past(dir.path(), &path);
    let mut f = File::options().write(true).open(&path).unwrap();
    f.write_all(vs("cccc", 100).as_bytes()).unwrap();
    drop(f);
    let u = store
        .sync_dir(dir.path())
        .unwrap()
        .expect("the rewrite is seen");
    assert_eq!(names(&u), ["cccc"]);
}

#[test]
fn an_atomic_rename_is_seen_by_its_inode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, vs("aaaa", 100)).unwrap();
    let mut store = trusting_store();
    store.sync_dir(dir.path()).unwrap().unwrap();
    let tmp = dir.path().join(".a.yaml.tmp");
    std::fs::write(&tmp, vs("dddd", 100)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let u = store
        .sync_dir(dir.path())
        .unwrap()
        .expect("the rename is seen");
    assert_eq!(names(&u), ["dddd"]);
}

#[test]
fn a_bad_edit_keeps_the_last_good_version_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, vs("good", 100)).unwrap();
    let mut store = FileStore::new(LoadOptions::default()).dropping_source_trees();
    store.sync_dir(dir.path()).unwrap().unwrap();
    std::fs::write(&path, vs("bad", -5)).unwrap();
    let u = store.sync_dir(dir.path()).unwrap().unwrap();
    assert_eq!(names(&u), ["good"]);
    let errors = &u.bad_files[&path.display().to_string()];
    assert!(
        errors.iter().any(|d| d.message.contains("negative")),
        "{errors:?}"
    );
    // Still bad, unchanged: nothing new.
    assert!(store.sync_dir(dir.path()).unwrap().is_none());
    assert_eq!(store.in_force().bad_files.len(), 1);
}
