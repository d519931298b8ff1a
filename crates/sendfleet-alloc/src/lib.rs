//! The allocator of sendfleet's binaries.
//!
//! glibc's malloc spent about a fifth of the worker's CPU under load (arena locks and
//! consolidation with many threads freeing what others allocated); mimalloc does not.
//! Each binary declares `#[global_allocator] static A: sendfleet_alloc::Allocator =
//! sendfleet_alloc::ALLOCATOR;` and calls [`tune`] first thing in `main`.

/// The allocator type to declare as `#[global_allocator]`.
pub type Allocator = mimalloc::MiMalloc;

/// The allocator value to declare as `#[global_allocator]`.
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;

/// How long freed memory stays committed before mimalloc returns it to the OS, ms.
///
/// mimalloc's default (10 ms) suits bursty programs; a worker at thousands of jobs/s
/// frees and reuses the same pages within milliseconds, so with the default it kept
/// decommitting pages (a system call) and faulting them back in (zeroed). In alternating
/// bench rounds of `uncapped` and `bare`, the worker's CPU per job against the bare loop's
/// was 1.05–1.21 with 10 ms, 1.26–1.29 with 100 ms and 0.89–0.94 with 1 s
/// (docs/PERFORMANCE.md). A second keeps that memory: ~8 MiB more peak RSS.
pub const PURGE_DELAY_MS: std::ffi::c_long = 1_000;

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_e` (between
/// `mi_option_eager_commit_delay` = 14 and `mi_option_use_numa_nodes` = 16, which the
/// bindings name); the bindings do not name it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = libmimalloc_sys::mi_option_eager_commit_delay + 1;

/// Applies the options above, unless the environment sets the option itself
/// (`MIMALLOC_PURGE_DELAY`, read by mimalloc at start-up), so an operator can still
/// trade memory for CPU. Call once, early in `main`; later calls are harmless.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table (an
    // atomic write); any value is valid for this option.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

/// The purge delay mimalloc is using now, ms.
pub fn purge_delay_ms() -> std::ffi::c_long {
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_get` reads mimalloc's option table; no pointers involved.
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tune_sets_the_purge_delay_option() {
        // The default differs, so this fails if the index named the wrong option.
        assert_ne!(purge_delay_ms(), PURGE_DELAY_MS, "mimalloc v2's default purge delay is 10 ms");
        tune();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }

    #[test]
    fn the_option_index_is_purge_delay() {
        // Neighbours named by the bindings pin the position in the enum.
        assert_eq!(MI_OPTION_PURGE_DELAY, 15);
        assert_eq!(libmimalloc_sys::mi_option_use_numa_nodes, MI_OPTION_PURGE_DELAY + 1);
    }
}
