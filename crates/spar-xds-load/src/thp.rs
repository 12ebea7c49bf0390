//! Transparent huge pages off for this process.
//!
//! mimalloc asks the kernel for huge pages on its arenas; 2,000 simulated proxies each
//! receiving a 1.6 MB config then made the kernel zero a fresh 2 MB page again and again as
//! buffers came and went: 38% of the machine's CPU in `clear_page_erms` during a full push,
//! twice what the control plane under test used. With huge pages off the bench measured a
//! full push in half the time.

// One `prctl` call; see the SAFETY comment.
#![allow(unsafe_code)]

/// Turns transparent huge pages off for the whole process (existing mappings included).
pub fn disable() {
    // SAFETY: PR_SET_THP_DISABLE takes four integer arguments and reads or writes no memory
    // of this process; it only sets a flag on the process's address space.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        eprintln!(
            "spar-xds-load: could not turn transparent huge pages off ({}); figures may be slower",
            std::io::Error::last_os_error()
        );
    }
}
