//! The process's allocator (mimalloc), and two of its options set before anything allocates.
//!
//! mimalloc's defaults suit a short-lived, allocation-heavy process, not a proxy that idles
//! or a control plane that pushes in bursts:
//! - it commits its first arena eagerly: an idle `spar proxy` held 10.8 MB of anonymous
//!   memory with that, 1.8 MB without (`MIMALLOC_ARENA_EAGER_COMMIT=0`);
//! - it keeps freed pages for a second before returning them (`MIMALLOC_PURGE_DELAY`), which
//!   held hundreds of MB in the control plane after a push to 2,000 proxies. Returning them
//!   at once (0) is no better: a page freed and taken again soon after is faulted in afresh,
//!   and the madvise that returned it interrupts the other CPUs. At 0 the proxy took a page
//!   fault every few requests (a tenth of its latency at one connection in
//!   bench/proxy-http.sh) and the control plane spent a fifth of a full push in page faults
//!   and madvise. 100 ms keeps pages that steady traffic reuses and still returns a burst's
//!   memory promptly (control-plane RSS peak at 2,000 proxies: 178 MB, 159 MB at 0).
//!
//! Both must be set before mimalloc creates its first arena, which happens at the first
//! allocation, before `main`; so they are set from an ELF constructor that runs before any
//! Rust code allocates. A value the operator sets in those environment variables still wins.

// Three C calls (getenv, mi_option_set, mi_collect) and an `.init_array` entry; each says
// why it is sound.
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

/// Returns the pages freed so far to the kernel now, instead of after the purge delay and
/// only once something allocates again. `spar proxy` calls it after each configuration
/// change: an idle sidecar would otherwise keep what decoding the old configuration freed
/// (11 MB of anonymous memory with 1,000 services). It collects the calling thread's heap
/// and every arena's freed pages; pages another worker thread still keeps in its own heap
/// wait for that thread's next allocation (the bench's proxy runs one worker).
pub fn return_freed_pages() {
    // SAFETY: `mi_collect` takes a bool and may run on any thread at any time; it returns
    // to the kernel only memory mimalloc already holds as free.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(target_os = "linux")]
extern "C" fn set_options() {
    for (option, env, value) in [
        (ARENA_EAGER_COMMIT, c"MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, c"MIMALLOC_PURGE_DELAY", 100),
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
