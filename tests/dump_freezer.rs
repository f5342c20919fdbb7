//! The tree freezer of the dump engine, on real processes: every thread
//! stopped, descendants found, failures leaving the tree running, group
//! stops kept, kill and reap.

mod kit;

use std::process::Command;
use std::time::Duration;

use crit::dump::freezer;
use crit::sys::inject::Injector;
use crit::sys::ptrace::{self, Stop};
use kit::sys::*;

#[test]
fn freeze_stops_every_thread_and_resume_lets_them_run() {
    let (p, addr) = spinner(4);
    let before = counters(p.pid, addr, 5);
    assert!(
        all_counters_move(p.pid, addr, &before),
        "spinner not spinning"
    );

    let frozen = freezer::freeze_tree(p.pid).unwrap();
    assert_eq!(frozen.tasks().len(), 1);
    let task = &frozen.tasks()[0];
    assert_eq!(task.pid, p.pid);
    assert!(!task.zombie);
    let mut got: Vec<i32> = task.threads.iter().map(|t| t.tid).collect();
    assert_eq!(task.threads[0].tid, p.pid, "leader first");
    got.sort();
    assert_eq!(got, tids(p.pid));
    for t in &task.threads {
        assert_eq!(t.stop, Stop::Interrupt);
        assert_eq!(state(p.pid, t.tid), Some('t'), "tid {} not stopped", t.tid);
    }
    // Frozen: the counters do not move.
    let a = counters(p.pid, addr, 5);
    std::thread::sleep(Duration::from_millis(50));
    let b = counters(p.pid, addr, 5);
    assert_eq!(a, b);

    frozen.resume().unwrap();
    assert!(wait_until(|| untraced(p.pid)));
    assert!(
        all_counters_move(p.pid, addr, &b),
        "threads did not run again"
    );
}

#[test]
fn drop_detaches() {
    let (p, addr) = spinner(2);
    {
        let frozen = freezer::freeze_tree(p.pid).unwrap();
        assert_eq!(frozen.threads().count(), 3);
    }
    assert!(wait_until(|| untraced(p.pid)));
    let now = counters(p.pid, addr, 3);
    assert!(all_counters_move(p.pid, addr, &now));
}

#[test]
fn freeze_catches_threads_created_during_the_freeze() {
    let p = Proc::program("churn", &[]);
    assert_eq!(p.line(), "ready");
    for round in 0..30 {
        let frozen = freezer::freeze_tree(p.pid).unwrap();
        let mut got: Vec<i32> = frozen.threads().map(|(_, t)| t.tid).collect();
        got.sort();
        let listed = tids(p.pid);
        assert_eq!(got, listed, "round {round}: frozen set differs from /proc");
        for &t in &listed {
            assert_eq!(state(p.pid, t), Some('t'), "round {round}: tid {t}");
        }
        frozen.resume().unwrap();
    }
    assert!(wait_until(|| untraced(p.pid)));
}

#[test]
fn freeze_tree_finds_descendants() {
    finds_descendants(&freezer::FreezeOptions::default());
}

/// The same where the kernel has no children files: a scan of /proc.
#[test]
fn freeze_tree_finds_descendants_by_scanning_proc() {
    finds_descendants(&freezer::FreezeOptions {
        children_files: false,
        ..Default::default()
    });
}

fn finds_descendants(opts: &freezer::FreezeOptions) {
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let p = Proc::program("tree", &[]);
    assert_eq!(p.line(), "ready");
    let kids = children(p.pid);
    assert_eq!(kids.len(), 2);
    let grandkids: Vec<i32> = kids.iter().flat_map(|&k| children(k)).collect();
    assert_eq!(grandkids.len(), 2);

    let frozen = freezer::freeze(&[p.pid], opts).unwrap();
    let mut pids: Vec<i32> = frozen.tasks().iter().map(|t| t.pid).collect();
    assert_eq!(pids[0], p.pid, "root first");
    pids.sort();
    let mut want = vec![p.pid];
    want.extend(&kids);
    want.extend(&grandkids);
    want.sort();
    assert_eq!(pids, want);
    for t in frozen.tasks() {
        assert_eq!(t.parent, if t.pid == p.pid { None } else { ppid(t.pid) });
        for th in &t.threads {
            assert_eq!(state(t.pid, th.tid), Some('t'));
        }
    }
    frozen.resume().unwrap();
    for &pid in &want {
        assert!(wait_until(|| untraced(pid)), "pid {pid} still traced");
    }
    // Root first, so that the children are reparented to us and reaped.
    kill_and_reap(&want_with_root_first(p.pid, &want));
}

fn want_with_root_first(root: i32, all: &[i32]) -> Vec<i32> {
    let mut v = vec![root];
    v.extend(all.iter().copied().filter(|&p| p != root));
    v
}

#[test]
fn failed_freeze_of_vanished_pid_leaves_the_others_running() {
    let (p, addr) = spinner(3);
    // A pid that existed and is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id() as i32;
    gone.wait().unwrap();

    let e = freezer::freeze_tasks(&[p.pid, gone_pid])
        .unwrap_err()
        .to_string();
    assert!(e.contains(&gone_pid.to_string()), "{e}");
    assert!(wait_until(|| untraced(p.pid)));
    let now = counters(p.pid, addr, 4);
    assert!(all_counters_move(p.pid, addr, &now));
}

#[test]
fn failed_freeze_of_traced_process_leaves_the_others_running() {
    let (a, addr) = spinner(3);
    let b = Proc::spawn(Command::new("sleep").arg("1000"));
    // Another thread traces b.
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let bpid = b.pid;
    let tracer = std::thread::spawn(move || {
        ptrace::seize(bpid).unwrap();
        tx.send(()).unwrap();
        let _ = done_rx.recv();
        // Seized without a stop: nothing to detach from; exiting this
        // thread releases b.
    });
    rx.recv().unwrap();

    let e = freezer::freeze_tasks(&[a.pid, b.pid])
        .unwrap_err()
        .to_string();
    assert!(e.contains(&b.pid.to_string()), "{e}");
    assert!(wait_until(
        || status(a.pid, "TracerPid").as_deref() == Some("0")
    ));
    assert!(wait_until(|| untraced(a.pid)));
    let now = counters(a.pid, addr, 4);
    assert!(all_counters_move(a.pid, addr, &now));
    done_tx.send(()).unwrap();
    tracer.join().unwrap();
    assert!(wait_until(|| untraced(b.pid)));
}

#[test]
fn freezing_a_thread_id_is_refused() {
    let (p, _addr) = spinner(1);
    let tid = *tids(p.pid).iter().find(|&&t| t != p.pid).unwrap();
    let e = freezer::freeze_tasks(&[tid]).unwrap_err().to_string();
    assert!(e.contains("thread"), "{e}");
    assert!(untraced(p.pid));
}

#[test]
fn group_stopped_task_stays_stopped() {
    let p = Proc::spawn(Command::new("sleep").arg("1000"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    assert!(wait_until(|| state(p.pid, p.pid) == Some('T')));

    let frozen = freezer::freeze_tree(p.pid).unwrap();
    assert_eq!(
        frozen.tasks()[0].threads[0].stop,
        Stop::Group(libc::SIGSTOP)
    );
    assert_eq!(state(p.pid, p.pid), Some('t'));
    // Injection works from a group stop, and the task stays stopped.
    let mut inj = Injector::new(p.pid).unwrap();
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    inj.finish().unwrap();
    assert_eq!(
        ptrace::stop_kind(p.pid).unwrap(),
        Stop::Group(libc::SIGSTOP)
    );
    frozen.resume().unwrap();

    assert!(wait_until(
        || status(p.pid, "TracerPid").as_deref() == Some("0")
    ));
    assert!(
        wait_until(|| state(p.pid, p.pid) == Some('T')),
        "not stopped after detach: {:?}",
        state(p.pid, p.pid)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert!(wait_until(|| state(p.pid, p.pid) == Some('S')));
}

#[test]
fn frozen_kill_kills_and_reaps() {
    let (p, _addr) = spinner(3);
    let pid = p.pid;
    let frozen = freezer::freeze_tree(pid).unwrap();
    frozen.kill(Vec::new()).unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn frozen_kill_with_its_memory_reaped_kills_and_reaps() {
    let (p, _addr) = spinner(3);
    let pid = p.pid;
    let frozen = freezer::freeze_tree(pid).unwrap();
    let pidfd = crit::sys::pidfd::pidfd_open(pid).unwrap();
    frozen.kill(vec![(pid, pidfd)]).unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn freeze_copes_with_children_that_come_and_go() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let p = Proc::program("forker", &[]);
    assert_eq!(p.line(), "ready");
    let mut zombies_seen = 0;
    for round in 0..40 {
        // Every fourth round as on a kernel without children files.
        let opts = freezer::FreezeOptions {
            children_files: round % 4 != 3,
            ..Default::default()
        };
        let frozen = freezer::freeze(&[p.pid], &opts).unwrap();
        assert_eq!(frozen.tasks()[0].pid, p.pid);
        for t in frozen.tasks() {
            if t.zombie {
                zombies_seen += 1;
                assert!(t.threads.is_empty());
                assert_eq!(state(t.pid, t.pid), Some('Z'), "round {round}");
            } else {
                for th in &t.threads {
                    assert_eq!(
                        state(t.pid, th.tid),
                        Some('t'),
                        "round {round}: pid {}",
                        t.pid
                    );
                }
            }
        }
        // Every child the root has now is in the frozen set.
        for c in children(p.pid) {
            assert!(frozen.task(c).is_some(), "round {round}: child {c} missing");
        }
        frozen.resume().unwrap();
    }
    eprintln!("zombies seen: {zombies_seen}");
    assert!(wait_until(|| untraced(p.pid)));
}

#[test]
fn freeze_and_inject_under_a_signal_flood() {
    let (p, addr) = spinner(3);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let pid = nix::unistd::Pid::from_raw(p.pid);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Ignored by default, but reported to a tracer: every one
                // that lands while we trace gives a signal-delivery stop.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH);
                n += 1;
            }
            n
        })
    };
    for round in 0..40 {
        let frozen = freezer::freeze_tree(p.pid).unwrap();
        for (_, t) in frozen.threads() {
            assert_eq!(t.stop, Stop::Interrupt, "round {round}");
            assert_eq!(state(p.pid, t.tid), Some('t'));
            let before = ptrace::get_regs(t.tid).unwrap();
            let mut inj = Injector::new(t.tid).unwrap();
            for _ in 0..3 {
                assert_eq!(inj.syscall(libc::SYS_gettid, [0; 6]).unwrap(), t.tid as i64);
            }
            inj.finish().unwrap();
            assert_eq!(
                format!("{before:?}"),
                format!("{:?}", ptrace::get_regs(t.tid).unwrap())
            );
        }
        frozen.resume().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(sent > 0);
    assert!(wait_until(|| untraced(p.pid)));
    let now = counters(p.pid, addr, 4);
    assert!(all_counters_move(p.pid, addr, &now));
}
