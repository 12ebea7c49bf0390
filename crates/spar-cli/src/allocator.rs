//! The process's allocator (mimalloc) and the two options that keep its footprint close to
//! what is live.
//!
//! By default mimalloc (v3) holds freed pages for a second before giving them back. A control
//! plane that builds a 1.6 MB response for each of 2,000 proxies in a burst, or a proxy that
//! decodes a big xDS update, then keeps tens of megabytes of freed memory resident
//! (measured with bench/control-plane.sh at 2,000 proxies: 423 MB → 356 MB). This is the
//! option `MIMALLOC_PURGE_DELAY=0` sets; setting it here means nobody has to remember the
//! variable, and a value the operator sets still wins. `MIMALLOC_ARENA_EAGER_COMMIT=0` saves
//! another ~25 MB there but only takes effect from the environment: the first arena exists
//! before `main` runs.

// mimalloc's option setter is a C function; calling it needs `unsafe`. See `tune`.
#![allow(unsafe_code)]

// Reading config allocates many small nodes; mimalloc does that markedly faster than
// glibc's allocator (see bench/parse-config.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, mimalloc.h, v2 and v3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Purges freed memory at once, unless the operator chose through the environment.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` takes two plain integers, has no preconditions and is safe
        // to call from any thread at any time (mimalloc keeps options in atomics); the
        // option exists in the mimalloc this crate links.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}
