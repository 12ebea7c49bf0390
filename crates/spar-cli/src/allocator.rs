//! The process's allocator (mimalloc) and the two options that keep its footprint close to
//! what is live.
//!
//! By default mimalloc holds freed pages for 10 ms before giving them back and commits a
//! whole arena up front. A control plane that builds a 1.6 MB response for each of 2,000
//! proxies in a burst, or a proxy that decodes a big xDS update, then keeps tens to hundreds
//! of megabytes of freed memory resident (measured: 423 MB → 331 MB for the control plane
//! with 2,000 proxies, see bench/control-plane.sh). These options are the ones
//! `MIMALLOC_PURGE_DELAY=0` and `MIMALLOC_ARENA_EAGER_COMMIT=0` set; setting them here means
//! nobody has to remember the variables, and a variable the operator sets still wins.

// mimalloc's option setter is a C function; calling it needs `unsafe`. See `tune`.
#![allow(unsafe_code)]

// Reading config allocates many small nodes; mimalloc does that markedly faster than
// glibc's allocator (see bench/parse-config.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_e` values (mimalloc.h, identical in v2 and v3).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the options unless the operator set them through the environment.
pub fn tune() {
    for (option, env, value) in [
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: `mi_option_set` takes two plain integers, has no preconditions and
            // is safe to call from any thread at any time (mimalloc stores options in
            // atomics); both option values exist in the mimalloc this crate links.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}
