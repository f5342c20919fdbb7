//! Tasks in odd states (tests/programs/hostile.c): a dump either
//! restores them as they were, checked by the task itself, or refuses
//! them in one line before any harm.

mod kit;

use kit::dump::*;
use std::time::{Duration, Instant};

/// Starts hostile.c in `mode`; returns it with its result and heartbeat
/// files.
fn start(kit: &Kit, mode: &str) -> (Prog, std::path::PathBuf, std::path::PathBuf) {
    let (result, hb) = (kit.path("result"), kit.path("hb"));
    let prog = kit.start(
        "hostile",
        &[mode, result.to_str().unwrap(), hb.to_str().unwrap()],
    );
    (prog, result, hb)
}

/// Dumps the task, lets it go, restores it and returns what it says of
/// its own state.
fn round_trip(kit: &Kit, mode: &str) -> String {
    let (mut prog, result, _) = start(kit, mode);
    let pid = prog.pid;
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    let _ = prog.child.wait();
    let t = Instant::now();
    while kit::proc::exists(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = kit.crit(&["restore", "-d", "--shell-job", "-D", dir.to_str().unwrap()]);
    ok(&r);
    kit::proc::ask_tree(pid, &result, 1)
}

/// An epoll keys each target by file and descriptor number; numbers
/// closed or given to another file since are recorded as a descriptor
/// that still holds the watched file.
#[test]
fn epoll_targets_whose_numbers_moved_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "epoll-moved");
    assert!(a.starts_with("OK"), "{a}");
}
