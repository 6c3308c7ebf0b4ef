//! Giving freed memory back to the operating system.
//!
//! mimalloc keeps pages freed in its arena for a while (its purge delay) and purges them only when a
//! later allocation on the slow path looks at the arena. A busy server reuses them anyway; an idle one
//! never comes back to look, so whatever was freed last stays resident. The big case is Argon2: hashing
//! or verifying one password allocates and frees 19 MiB (its memory cost), at start-up when the owner
//! comes from the config and on every sign-in. `release_unused` asks the allocator to purge what has
//! been free for longer than the delay; `spawn_releaser` does that every few seconds.
//!
//! The only unsafe code of the project is here: the allocator's own C API is reachable only through
//! FFI. Both calls take no pointers, only a flag, and are documented as callable from any thread.

use std::time::Duration;

/// How often the releaser runs. Each run walks the calling thread's heap and the arena's purge list;
/// it is cheap next to the interval.
const INTERVAL: Duration = Duration::from_secs(5);

/// Returns pages that have been free for longer than mimalloc's purge delay to the OS.
#[allow(unsafe_code)]
pub fn release_unused() {
    // SAFETY: `mi_collect` takes a plain bool and touches only the allocator's own state; it is
    // thread-safe (it collects the calling thread's heap and purges shared arena ranges under the
    // allocator's locks). `force = false` keeps the allocator's own delay, so pages in use or just
    // freed are left alone.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Runs `release_unused` on a timer for the life of the runtime.
pub fn spawn_releaser() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            release_unused();
        }
    });
}
