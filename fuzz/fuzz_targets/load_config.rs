//! YAML/JSON text → positioned tree → kinds → schema → typed model → webhook rules →
//! legacy conversion. Any input must give diagnostics, never a panic, a hang or an
//! unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spar_model::{ConfigSet, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let set = ConfigSet::load([("fuzz.yaml", text)], &LoadOptions::default());
    // Render every diagnostic: formatting paths and messages must not panic either.
    for d in set.diagnostics() {
        let _ = d.to_string();
    }
});
