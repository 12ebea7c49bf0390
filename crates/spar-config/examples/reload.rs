//! Times a one-file change in a watched config directory (no watcher: the same rescan and
//! store update the watcher runs after its debounce).
//!
//! ```text
//! python3 bench/gen_mesh.py gen /tmp/rl/config 1000 10
//! cargo run --release -p spar-config --example reload -- /tmp/rl/config
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use spar_config::FileStore;
use spar_model::LoadOptions;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: reload DIR");
    let dir = Path::new(&dir);
    // As the control plane runs it.
    let mut store = FileStore::new(LoadOptions::default()).dropping_source_trees();
    let t = Instant::now();
    let first = store.sync_dir(dir).unwrap().unwrap();
    println!(
        "initial: {} resources, {} diagnostics in {:?}",
        first.config.resources().len(),
        first.config.diagnostics().len(),
        t.elapsed()
    );
    let file = dir.join("endpoints/svc-0037.yaml");
    let verbose = std::env::var_os("VERBOSE").is_some();
    let original = std::fs::read_to_string(&file).unwrap();
    let mut times = Vec::new();
    for i in 0..std::env::args().nth(2).map_or(10, |n| n.parse().unwrap()) {
        let text = original.replace("10.", &format!("2{}.", i % 10));
        let tmp = dir.with_extension("tmp-reload");
        std::fs::write(&tmp, &text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let t = Instant::now();
        let u = store.sync_dir(dir).unwrap().unwrap();
        let total = t.elapsed();
        times.push(total);
        let stats = store.last_sync();
        if verbose {
            println!(
                "change {i}: {total:?} ({} files, {} read, {} parsed; {} resources; changed {:?})",
                stats.files,
                stats.read,
                stats.parsed,
                u.config.resources().len(),
                u.changed
            );
        }
    }
    std::fs::write(&file, original).unwrap();
    times.sort();
    println!(
        "one-file change, {} runs: min {:?}, median {:?}, max {:?}",
        times.len(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
