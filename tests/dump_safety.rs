//! A dump that refuses, fails halfway or is killed leaves the tree
//! running as before.

mod kit;

use kit::dump::*;
use std::time::Duration;

fn beat(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The task is running (not stopped, not traced: the dump worker lets it
/// go within a moment) and its heartbeat moves.
fn runs_on(pid: i32, hb: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        if st.contains("TracerPid:\t0") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} still traced:\n{st}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let a = beat(hb);
    std::thread::sleep(Duration::from_millis(100));
    let b = beat(hb);
    assert!(b > a, "pid {pid}: heartbeat stuck at {a}");
}

/// Dumps `pid` and checks it was refused in one line holding every one
/// of `want`, leaving no images and the task running on (its heartbeat
/// at `hb` moving) with the mappings it had.
fn refused_before_harm(kit: &Kit, pid: i32, hb: &std::path::Path, want: &[&str]) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let dir = kit.path("img");
    let o = kit.dump(pid, &dir, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    for w in want {
        assert!(e.contains(w), "{w:?} in {e}");
    }
    runs_on(pid, hb);
    assert!(
        images(&dir).is_empty(),
        "nothing left in {:?}",
        images(&dir)
    );
    let after = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert_eq!(after, maps, "no mapping of crit's is left in the task");
}

#[test]
fn unsupported_file_is_refused_before_harm() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("refuse", &[hb.to_str().unwrap()]);
    let fd3 = format!("pid {} fd 3", prog.pid);
    refused_before_harm(&kit, prog.pid, &hb, &[&fd3, "pidfd"]);
    kill_tree(prog.pid);
}

/// Memory-deny-write-execute: crit's calls still run in the task (its
/// runner is never writable and executable), and the dump is refused,
/// naming it, since the images cannot carry it.
#[test]
fn memory_deny_write_execute_is_refused_before_harm() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("refuse", &[hb.to_str().unwrap(), "mdwe"]);
    let pid = format!("pid {}", prog.pid);
    refused_before_harm(&kit, prog.pid, &hb, &[&pid, "PR_SET_MDWE"]);
    kill_tree(prog.pid);
}

/// A mapping registered for missing faults with a userfaultfd another
/// process holds (its pages may be there, not in the task): refused,
/// naming the mapping, where the task holds no userfaultfd to refuse.
#[test]
fn memory_served_by_another_process_is_refused_before_harm() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("refuse", &[hb.to_str().unwrap(), "uffd-served"]);
    // The child registered its memory; the parent holds the userfaultfd.
    let served: i32 = prog.ready["READY ".len()..].parse().unwrap();
    assert_ne!(served, prog.pid);
    let pid = format!("pid {served}");
    refused_before_harm(&kit, served, &hb, &[&pid, "userfaultfd", "missing"]);
    kill_tree(prog.pid);
}

/// A socket with an eBPF filter (SO_ATTACH_BPF): the kernel gives no
/// program back, and a restore without it would let every packet
/// through; refused, naming the fd, where CRIU fails on the getsockopt.
#[test]
fn an_ebpf_socket_filter_is_refused_before_harm() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("refuse", &[hb.to_str().unwrap(), "bpf-filter"]);
    let fd3 = format!("pid {} fd 3", prog.pid);
    refused_before_harm(&kit, prog.pid, &hb, &[&fd3, "eBPF filter"]);
    kill_tree(prog.pid);
}

/// A corked UDP socket holding a datagram: its restore would lose it
/// (CRIU's images have no place for it); refused, naming UDP_CORK.
#[test]
fn a_corked_udp_socket_is_refused_before_harm() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("refuse", &[hb.to_str().unwrap(), "udp-cork"]);
    let fd3 = format!("pid {} fd 3", prog.pid);
    refused_before_harm(&kit, prog.pid, &hb, &[&fd3, "UDP_CORK"]);
    kill_tree(prog.pid);
}

/// Hugetlb memory (here reserved, never touched) is refused by dump and
/// by pre-dump, whose rounds read no VmFlags, before any round runs.
#[test]
fn hugetlb_memory_is_refused_before_harm() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("refuse", &[hb.to_str().unwrap(), "hugetlb"]);
    let pid = format!("pid {}", prog.pid);
    refused_before_harm(&kit, prog.pid, &hb, &[&pid, "hugetlb memory"]);
    let dir = kit.path("pre");
    let o = kit::crit()
        .args(["pre-dump", "-t", &prog.pid.to_string(), "-D"])
        .arg(&dir)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("hugetlb memory") && e.contains(&pid), "{e}");
    runs_on(prog.pid, &hb);
    assert!(images(&dir).is_empty(), "{:?}", images(&dir));
    kill_tree(prog.pid);
}

#[test]
fn failure_in_a_child_resumes_the_whole_tree() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "16", "pidfd-child"]);
    let dir = kit.path("img");
    let o = kit.dump(prog.pid, &dir, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pidfd"), "{}", stderr(&o));
    // The root was frozen, read (injected calls included) and resumed.
    runs_on(prog.pid, &hb);
    let again = kit.dump(prog.pid, &kit.path("img2"), &[]);
    assert!(!again.status.success(), "still refused the same way");
    runs_on(prog.pid, &hb);
    assert!(images(&dir).is_empty());
    for c in std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", prog.pid))
        .unwrap()
        .split_whitespace()
    {
        kill_tree(c.parse().unwrap());
    }
    kill_tree(prog.pid);
}

#[test]
fn killed_dump_leaves_the_tree_running() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "512"]);
    for (i, delay) in [5u64, 20, 40, 80, 150].iter().enumerate() {
        let dir = kit.path(&format!("img{i}"));
        let mut c = kit::crit()
            .args([
                "dump",
                "-t",
                &prog.pid.to_string(),
                "-D",
                dir.to_str().unwrap(),
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = c.kill();
        let _ = c.wait();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            alive(prog.pid),
            "killed after {delay} ms: the task must live"
        );
        runs_on(prog.pid, &hb);
    }
    kill_tree(prog.pid);
}

/// The dump worker of `crit dump` process `front` (its child), once it
/// exists.
fn worker_of(front: i32) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let kids = std::fs::read_to_string(format!("/proc/{front}/task/{front}/children"))
            .unwrap_or_default();
        if let Some(w) = kids.split_whitespace().next() {
            return w.parse().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no dump worker");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILL to the process group of `crit dump` (`kill -9 -PGID`, a
/// supervisor's group kill): the worker is in a group of its own, so it
/// lives on, lets the tree go and removes its images (or finishes, if
/// it was past its last check); the task runs on.
#[test]
fn a_group_kill_of_the_dump_leaves_the_tree_running() {
    use std::os::unix::process::CommandExt;
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "512"]);
    for (i, delay) in [5u64, 20, 40, 80, 150].iter().enumerate() {
        let dir = kit.path(&format!("img{i}"));
        let mut c = kit::crit()
            .args(["dump", "-R", "-t", &prog.pid.to_string(), "-D"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let front = c.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let worker = worker_of(front);
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(front),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = c.wait();
        // The worker, reparented to the test's subreaper, ends on its own.
        while alive(worker) {
            assert!(std::time::Instant::now() < deadline, "the worker goes on");
            std::thread::sleep(Duration::from_millis(5));
        }
        reap(&[worker], Duration::from_secs(1));
        assert!(
            kit::sys::untraced(prog.pid),
            "group killed after {delay} ms: still traced"
        );
        runs_on(prog.pid, &hb);
        let left = images(&dir);
        assert!(
            left.is_empty() || left.iter().any(|f| f == "inventory.img"),
            "after {delay} ms: a partial image set {left:?}"
        );
    }
    kill_tree(prog.pid);
}

/// Ctrl-C (SIGINT) or SIGTERM to `crit dump`: it passes the signal on
/// and returns only once its worker has let the tree go, so the next
/// command finds the task running and untraced at once, and no images.
#[test]
fn an_interrupted_dump_returns_with_the_tree_let_go() {
    use nix::sys::signal::Signal;
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "512"]);
    let mut interrupted = 0;
    for (i, (delay, sig)) in [
        (5u64, Signal::SIGINT),
        (20, Signal::SIGTERM),
        (40, Signal::SIGINT),
        (80, Signal::SIGHUP),
    ]
    .iter()
    .enumerate()
    {
        let dir = kit.path(&format!("img{i}"));
        let c = kit::proc::with_default_signals(
            kit::crit()
                .args(["dump", "-R", "-t", &prog.pid.to_string(), "-D"])
                .arg(&dir)
                .stderr(std::process::Stdio::piped()),
        )
        .spawn()
        .unwrap();
        let front = c.id() as i32;
        let worker = worker_of(front);
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(front), *sig);
        let out = c.wait_with_output().unwrap();
        // Before anything else: the worker is gone and the task free.
        assert!(!alive(worker), "the worker outlives crit dump");
        assert!(
            kit::sys::untraced(prog.pid),
            "{sig} after {delay} ms: still traced when crit dump returned"
        );
        let e = stderr(&out);
        if out.status.success() {
            // Done before the signal was looked at: a whole image set.
            assert!(
                e.contains(&format!("{sig} came when the dump was done")),
                "{e}"
            );
            assert!(images(&dir).iter().any(|f| f == "inventory.img"));
        } else {
            interrupted += 1;
            assert_eq!(out.status.code(), Some(1), "{e}");
            assert_eq!(e.trim().lines().count(), 1, "{e}");
            assert!(
                e.contains(&format!("crit dump was interrupted by {sig}")),
                "{e}"
            );
            assert!(images(&dir).is_empty(), "left: {:?}", images(&dir));
        }
        runs_on(prog.pid, &hb);
    }
    assert!(interrupted > 0, "no dump was interrupted");
    kill_tree(prog.pid);
}

/// SIGKILL to the dump worker itself: `crit dump` says so and what became
/// of the tree, and no image or directory of it is left.
#[test]
fn killed_worker_is_reported() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "512"]);
    for (i, delay) in [5u64, 20, 40, 80].iter().enumerate() {
        if !alive(prog.pid) {
            break;
        }
        let dir = kit.path(&format!("img{i}"));
        let c = kit::crit()
            .args(["dump", "-t", &prog.pid.to_string(), "-D"])
            .arg(&dir)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let worker = worker_of(c.id() as i32);
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(worker),
            nix::sys::signal::Signal::SIGKILL,
        );
        let out = c.wait_with_output().unwrap();
        let e = stderr(&out);
        if out.status.success() {
            // The dump was done before the kill.
            kill_tree(prog.pid);
            return;
        }
        assert_eq!(out.status.code(), Some(1), "{e}");
        if !e.contains("the dump worker was killed") && !alive(prog.pid) {
            // An earlier kill landed inside an injected call: the task
            // went on with the injection's registers and died just after
            // the check above (docs/dump.md, "Safety"); this dump
            // found it gone and said so in one line.
            assert_eq!(e.lines().count(), 1, "{e}");
            break;
        }
        assert!(e.contains("the dump worker was killed by SIGKILL"), "{e}");
        assert!(e.contains(&format!("the tree of pid {}", prog.pid)), "{e}");
        assert!(
            !dir.exists(),
            "after {delay} ms: {} left behind",
            dir.display()
        );
    }
    kill_tree(prog.pid);
}

/// A new images directory is private whatever the umask; an existing one
/// others may write to is refused, and so is a file in its place.
#[test]
fn images_dir_is_private() {
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "1"]);
    let dir = kit.path("img");
    let o = std::process::Command::new("sh")
        .args([
            "-c",
            "umask 000; exec \"$0\" dump -R -t \"$1\" -D \"$2\" -o \"$3\"",
        ])
        .arg(env!("CARGO_BIN_EXE_crit"))
        .arg(prog.pid.to_string())
        .arg(&dir)
        .arg(kit.path("dump.log"))
        .output()
        .unwrap();
    ok(&o);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // The log too: it names the tree's files and sockets.
    let log = std::fs::metadata(kit.path("dump.log")).unwrap();
    assert_eq!(log.permissions().mode() & 0o777, 0o600);
    let open = kit.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = kit.dump(prog.pid, &open, &["-R"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("group or others may write to it (mode 777)"),
        "{e}"
    );
    assert!(images(&open).is_empty());
    // A file where the directory should be is said to be one, and stays.
    let file = kit.path("file");
    std::fs::write(&file, b"mine").unwrap();
    let o = kit.dump(prog.pid, &file, &["-R"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.trim().lines().count() == 1
            && e.contains("file: create images directory: Not a directory"),
        "{e}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    kill_tree(prog.pid);
}

#[test]
fn kernel_threads_are_named() {
    let kit = Kit::new();
    let o = kit.dump(2, &kit.path("img"), &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("pid 2: is a kernel thread"),
        "{}",
        stderr(&o)
    );
    assert!(!kit.path("img").exists());
}

#[test]
fn bad_pid_and_self() {
    let kit = Kit::new();
    let o = kit.dump(9_999_999, &kit.path("img"), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no such process"));
    let o = kit.dump(std::process::id() as i32, &kit.path("img"), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("ancestors"), "{}", stderr(&o));
}

fn refused(kit: &Kit, args: &[&str], want: &[&str]) {
    refused_with(
        kit,
        args,
        want,
        &[&[], &["--tcp-established", "--ext-unix-sk"]],
    );
}

fn refused_with(kit: &Kit, args: &[&str], want: &[&str], extras: &[&[&str]]) {
    let prog = kit.start("refuse_net", args);
    let dir = kit.path(&format!("img-{}", args[0]));
    for &extra in extras {
        let o = kit.dump(prog.pid, &dir, extra);
        assert!(!o.status.success(), "{args:?} {extra:?} must be refused");
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        for w in want {
            assert!(e.contains(w), "{args:?}: {w:?} not in {e}");
        }
        assert!(alive(prog.pid));
        let st = std::fs::read_to_string(format!("/proc/{}/status", prog.pid)).unwrap();
        assert!(st.contains("TracerPid:\t0"));
        // The dump made the directory: a refused dump removes it.
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    kill_tree(prog.pid);
}

/// Without --tcp-established a connection is refused, naming the option
/// (tests/tcp.rs dumps them with it).
#[test]
fn established_tcp_is_refused_clearly() {
    let kit = Kit::new();
    let port = free_ports(1).to_string();
    refused_with(
        &kit,
        &["tcp", &port],
        &["TCP socket", "is connected", "--tcp-established"],
        &[&[], &["--ext-unix-sk"]],
    );
}

#[test]
fn descriptors_in_flight_are_refused_clearly() {
    let kit = Kit::new();
    refused(
        &kit,
        &["scm"],
        &["SCM_RIGHTS", "fd 4", "no task holds", "userfaultfd"],
    );
}

/// Data on a connection still pending in a listener can be read only by
/// taking the connection from the tree: with -R that is refused, and the
/// tree runs on untouched (the dump without -R takes it; restore_ours).
#[test]
fn data_on_a_pending_connection_is_refused_with_leave_running() {
    let kit = Kit::new();
    let p = kit.path("l.sock");
    let prog = kit.start("refuse_net", &["pending-data", p.to_str().unwrap()]);
    let dir = kit.path("img-pending");
    let o = kit.dump(prog.pid, &dir, &["-R"]);
    assert!(!o.status.success(), "must be refused with -R");
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    for w in ["pending in listener", "fd 4", "-R"] {
        assert!(e.contains(w), "{w:?} not in {e}");
    }
    assert!(alive(prog.pid));
    let st = std::fs::read_to_string(format!("/proc/{}/status", prog.pid)).unwrap();
    assert!(st.contains("TracerPid:\t0"));
    assert!(images(&dir).is_empty());
    kill_tree(prog.pid);
}

#[test]
fn pending_connection_of_a_closed_client_is_refused_as_criu_does() {
    let kit = Kit::new();
    let p = kit.path("l.sock");
    refused(
        &kit,
        &["pending-closed", p.to_str().unwrap()],
        &["client has closed", "fd 3"],
    );
}

#[test]
fn ctrl_c_on_the_whole_job_leaves_the_tree_running() {
    use std::os::unix::process::CommandExt;
    let kit = Kit::new();
    let hb = kit.path("hb");
    let prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "512"]);
    for (i, delay) in [10u64, 40, 100].iter().enumerate() {
        let dir = kit.path(&format!("img{i}"));
        let mut cmd = kit::crit();
        cmd.args([
            "dump",
            "-t",
            &prog.pid.to_string(),
            "-D",
            dir.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .process_group(0);
        let mut c = kit::proc::with_default_signals(&mut cmd).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(*delay));
        // What a terminal does on Ctrl-C: SIGINT to the whole process group.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let st = c.wait().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            alive(prog.pid),
            "SIGINT after {delay} ms ({st}): the task must live"
        );
        runs_on(prog.pid, &hb);
    }
    kill_tree(prog.pid);
}

/// Without --file-locks a lock is refused, naming the option
/// (tests/file_locks.rs dumps them with it).
#[test]
fn file_locks_are_refused_clearly() {
    let kit = Kit::new();
    let p = kit.path("locked");
    refused(
        &kit,
        &["flock", p.to_str().unwrap()],
        &["FLOCK file lock", "--file-locks", " fd "],
    );
}

/// A lock no task of the tree holds by pid (an open file description
/// lock shows pid -1 in /proc/locks) on a socket, whose fdinfo crit does
/// not read: still refused, naming the descriptor.
#[test]
fn a_lock_on_a_socket_is_refused_clearly() {
    let kit = Kit::new();
    refused(
        &kit,
        &["ofd-socket"],
        &["fd 3", "socket:[", "OFDLCK", "--file-locks"],
    );
}

/// A flock whose file only a mapping holds shows in no descriptor's
/// fdinfo: it cannot be recorded (the images name a lock by its fd),
/// and is refused even with --file-locks rather than lost.
#[test]
fn a_lock_held_through_a_mapping_is_refused() {
    let kit = Kit::new();
    let p = kit.path("mapped");
    refused_with(
        &kit,
        &["flock-mapped", p.to_str().unwrap()],
        &["FLOCK file lock", "through no descriptor"],
        &[&["--file-locks"]],
    );
}

/// crit moves a task onto its own CPU while it injects calls into it
/// (src/sys/affinity.rs); each thread must have its own CPU set back
/// after the dump, whatever it was.
#[test]
fn threads_keep_their_cpu_sets() {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let kit = Kit::new();
    let prog = kit.start("threads", &[]);
    let tids: Vec<i32> = prog.ready_numbers();
    assert_eq!(tids.len(), 3, "{}", prog.ready);
    let mine = sched_getaffinity(Pid::from_raw(0)).unwrap();
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| mine.is_set(c).unwrap())
        .collect();
    // The main thread on the last CPU, the others on the first: sets that
    // differ from crit's, and from each other where there are two CPUs.
    for (i, &tid) in tids.iter().enumerate() {
        let mut s = CpuSet::new();
        s.set(if i == 0 {
            cpus[cpus.len() - 1]
        } else {
            cpus[0]
        })
        .unwrap();
        sched_setaffinity(Pid::from_raw(tid), &s).unwrap();
    }
    let sets = || -> Vec<String> {
        tids.iter()
            .map(|t| {
                let st =
                    std::fs::read_to_string(format!("/proc/{}/task/{t}/status", prog.pid)).unwrap();
                st.lines()
                    .find(|l| l.starts_with("Cpus_allowed_list:"))
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let before = sets();
    ok(&kit.dump(prog.pid, &kit.path("img"), &["-R"]));
    assert_eq!(sets(), before, "CPU sets of the threads after a dump");
    kill_tree(prog.pid);
}
