//! The one lock of the engine tests. They share pids, paths, ports, the
//! subreaper's children and the fixtures' pids, so one runs at a time:
//! across the threads of a test binary (a mutex) and across binaries
//! (a flock). It is reentrant within a thread, so a test may take it and
//! then use helpers that take it again.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

static LOCK: Mutex<()> = Mutex::new(());

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Held while alive; the outermost guard releases the lock.
pub struct Serial {
    _held: Option<(MutexGuard<'static, ()>, nix::fcntl::Flock<std::fs::File>)>,
}

impl Drop for Serial {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Takes the lock (or enters it again on this thread).
pub fn lock() -> Serial {
    if held() {
        DEPTH.with(|d| d.set(d.get() + 1));
        return Serial { _held: None };
    }
    let t = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/crit-engine-tests.lock")
        .expect("open the test lock file");
    let p = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the test lock file");
    DEPTH.with(|d| d.set(1));
    Serial {
        _held: Some((t, p)),
    }
}

/// Whether this thread holds the lock.
pub fn held() -> bool {
    DEPTH.with(|d| d.get() > 0)
}
