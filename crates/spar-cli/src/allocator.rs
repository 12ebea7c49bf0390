//! The process's allocator (mimalloc), and two of its options set before anything allocates.
//!
//! mimalloc's defaults suit a short-lived, allocation-heavy process, not a proxy that idles
//! or a control plane that pushes in bursts:
//! - it commits its first arena eagerly: an idle `spar proxy` held 10.8 MB of anonymous
//!   memory with that, 1.8 MB without (`MIMALLOC_ARENA_EAGER_COMMIT=0`);
//! - it keeps freed pages for a second before returning them (`MIMALLOC_PURGE_DELAY`): the
//!   control plane at 2,000 proxies (bench/control-plane.sh) stays at 423 MB with that,
//!   331 MB with both options at 0.
//!
//! Both must be set before mimalloc creates its first arena, which happens at the first
//! allocation, before `main`; so they are set from an ELF constructor that runs before any
//! Rust code allocates. A value the operator sets in those environment variables still wins.
//!
//! The proxy is the exception to the second: freeing a page's last block on the request
//! path and taking the page again for the next request made every few requests a page
//! fault (0.15 to 0.5 per request in bench/proxy-http.sh, at one connection a tenth of the
//! request's latency), so `spar proxy` keeps freed pages for [`PROXY_PURGE_DELAY_MS`]
//! ([`keep_freed_pages`]).

// Two C calls (getenv, mi_option_set) and an `.init_array` entry; each says why it is sound.
#![allow(unsafe_code)]

// Reading config allocates many small nodes; mimalloc does that markedly faster than
// glibc's allocator (see bench/parse-config.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_e` values (mimalloc.h; the same in v2 and v3).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Runs from `.init_array`, before `main` and before the Rust runtime allocates.
// SAFETY (of the attribute): `.init_array` holds `extern "C" fn()` pointers that the dynamic
// loader calls once at start-up; this is such a function, it takes no arguments, does not
// unwind (no panicking code) and touches nothing the runtime has yet to set up.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static SET_OPTIONS: extern "C" fn() = set_options;

/// How long `spar proxy` keeps freed pages: long enough that steady traffic reuses them,
/// short enough that a burst's memory goes back to the kernel soon after it.
pub const PROXY_PURGE_DELAY_MS: i64 = 100;

/// Keeps freed pages for `ms` milliseconds before returning them to the kernel, unless the
/// operator set `MIMALLOC_PURGE_DELAY`. Call it before the process starts a second thread.
pub fn keep_freed_pages(ms: i64) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` takes two plain integers; mimalloc stores the option in a
        // plain variable that allocating threads read, and the caller runs this before any
        // other thread exists (the subcommand's first step, before its runtime starts).
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, ms as _) };
    }
}

#[cfg(target_os = "linux")]
extern "C" fn set_options() {
    for (option, env, value) in [
        (ARENA_EAGER_COMMIT, c"MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, c"MIMALLOC_PURGE_DELAY", 0),
    ] {
        // SAFETY: `getenv` reads the environment the loader set up, with a NUL-terminated
        // name, and allocates nothing (a Rust `env::var_os` would allocate, and so create
        // the arena this is configuring); nothing else runs yet that could change the
        // environment concurrently.
        let unset = unsafe { libc::getenv(env.as_ptr()) }.is_null();
        if unset {
            // SAFETY: `mi_option_set` takes two plain integers and has no preconditions;
            // mimalloc keeps options in atomics and reads them lazily, so it may be called
            // before mimalloc has initialized.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}
