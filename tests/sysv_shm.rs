//! System V shared memory in the host's ipc namespace (postgres keeps its
//! buffers so): the mapping is dumped by its id, as CRIU does, and the
//! restore attaches the segment again at its address; a segment gone
//! since the dump is a clear refusal that leaves nothing running.

mod kit;
use kit::host::ShmSegment;

use kit::dump::*;
use std::time::{Duration, Instant};

fn wait_for(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "no answer in {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn host_segment_is_attached_again() {
    let kit = Kit::new();
    let result = kit.path("result");
    let prog = kit.start("sysvshm", &[result.to_str().unwrap()]);
    let shmid: i32 = prog
        .ready
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let seg = ShmSegment(shmid);
    let dir = kit.path("img");
    ok(&kit.dump(prog.pid, &dir, &[]));
    let left = reap(&[prog.pid], Duration::from_secs(2));
    assert!(left.is_empty(), "the dump left {left:?} running");
    let pidfile = kit.path("pid");
    let args = [
        "restore",
        "-d",
        "-D",
        dir.to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
    ];
    ok(&kit.crit(&args));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let answer = wait_for(&result);
    kill_tree(pid);
    reap_all();
    assert_eq!(answer, "OK");
    // Gone since the dump: refused, and nothing is left running.
    drop(seg);
    let out = kit.crit(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("System V shared memory {shmid}")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        my_children().is_empty(),
        "left running: {:?}",
        my_children()
    );
}
