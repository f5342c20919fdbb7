//! Dumps that copy only what was written since an earlier one: `crit
//! pre-dump`, `dump --prev-images-dir`, and `dump --pre-copy` (issue 15).
//! The task (tests/programs/gens.c) keeps rewriting part of its memory
//! and, asked, checks every page against its table of generations; the
//! restored task does the same. Tracking must be invisible to the task
//! and gone after the dump (no `uw` in its smaps' VmFlags), also when
//! the dump is killed, and must leave a userfaultfd of the task's own
//! alone, and must not miss what the kernel writes into pinned buffers
//! (tests/programs/uring.c).

mod kit;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// (start, VmFlags) of every mapping of `pid`.
fn vm_flags(pid: i32) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out = Vec::new();
    let mut start = 0;
    for l in text.lines() {
        if let Some(f) = l.strip_prefix("VmFlags:") {
            out.push((start, f.trim().to_string()));
        } else if let Some((range, _)) = l.split_once(' ') {
            if let Some((s, _)) = range.split_once('-') {
                if let Ok(v) = u64::from_str_radix(s, 16) {
                    start = v;
                }
            }
        }
    }
    out
}

/// Whether any mapping of `pid` is registered for write-protection.
fn tracked(pid: i32) -> bool {
    vm_flags(pid)
        .iter()
        .any(|(_, f)| f.split(' ').any(|x| x == "uw"))
}

use kit::gens::{ask, crit, ok, restore_and_ask, start, stats, Gens};

/// Whether `pid` carries no tracking registration within 3 s (a killed
/// worker's registration goes with its last descriptor, shortly after).
fn settles_untracked(pid: i32) -> bool {
    let t = Instant::now();
    while tracked(pid) && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    !tracked(pid)
}

/// `g`'s task ends up untracked, checks its memory, and is ended.
fn untracked_and_unharmed(mut g: Gens) {
    assert!(settles_untracked(g.pid), "tracking left behind");
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

#[test]
fn pre_dumps_then_a_dump_restore_every_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 128, 8, 20000, false, false);
    let pid = g.pid.to_string();
    let d1 = tmp.path().join("d1");
    let d2 = tmp.path().join("d2");
    let d3 = tmp.path().join("d3");
    ok(&crit(&["pre-dump", "-t", &pid, "-D", d1.to_str().unwrap()]));
    // Between dumps a keeper holds the tracking: the task's memory is
    // registered, and the task runs on unaware.
    assert!(tracked(g.pid), "no tracking after pre-dump");
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    std::thread::sleep(Duration::from_millis(200));
    ok(&crit(&[
        "pre-dump",
        "-t",
        &pid,
        "-D",
        d2.to_str().unwrap(),
        "--prev-images-dir",
        "../d1",
    ]));
    let (s1, s2) = (stats(&d1), stats(&d2));
    assert!(s1.pages_written >= 128 * 256, "{s1:?}");
    // Only the hot 8 MiB were written; pages that became present since
    // (thread stacks made huge pages by khugepaged) are copied too.
    assert!(
        s2.pages_written * 3 < s1.pages_written && s2.pages_skipped_parent > 30 * 1024,
        "{s2:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    ok(&crit(&[
        "dump",
        "-t",
        &pid,
        "-D",
        d3.to_str().unwrap(),
        "--prev-images-dir",
        "../d2",
        "--track-mem",
    ]));
    assert_eq!(
        std::fs::read_link(d3.join("parent")).unwrap(),
        Path::new("../d2")
    );
    assert!(stats(&d3).pages_skipped_parent > 30 * 1024);
    let a = restore_and_ask(&mut g, &d3);
    assert!(a.starts_with("OK 32768 "), "{a}");
}

#[test]
fn pre_copy_leaves_one_self_contained_set_and_no_tracking() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    // Forks and fresh mappings between rounds, too.
    let mut g = start(tmp.path(), 128, 16, 20000, true, false);
    let img = tmp.path().join("img");
    let e = ok(&crit(&[
        "dump",
        "-v",
        "-R",
        "--pre-copy",
        "-t",
        &g.pid.to_string(),
        "-D",
        img.to_str().unwrap(),
    ]));
    assert!(e.contains("pre-copy round 1:"), "{e}");
    // The summary counts the rounds' pages in the set too (128 MiB).
    let written: f64 = e
        .split(" MiB written")
        .next()
        .and_then(|h| h.rsplit(", ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{e}"));
    assert!(written >= 128.0, "{e}");
    // The task ran on, is not tracked any more, and is intact.
    assert!(!tracked(g.pid), "tracking left behind");
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    // An ordinary set: no parent, no rounds, every page here.
    assert!(!img.join("parent").exists() && !img.join(".crit-precopy").exists());
    let x = kit::crit()
        .args([
            "x",
            img.to_str().unwrap(),
            "mem",
            &g.pid.to_string(),
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&x.stdout).unwrap();
    assert_eq!(v["in_parent"], 0, "{v}");
    assert!(stats(&img).pages_written > 0);
    let a = restore_and_ask(&mut g, &img);
    assert!(a.starts_with("OK 32768 "), "{a}");
}

#[test]
fn a_task_with_its_own_userfaultfd_keeps_it() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 16, 4, 5000, false, true);
    let own = g.own.expect("own region");
    let d1 = tmp.path().join("d1");
    ok(&crit(&[
        "pre-dump",
        "-t",
        &g.pid.to_string(),
        "-D",
        d1.to_str().unwrap(),
    ]));
    let flags = vm_flags(g.pid);
    let of = |a: u64| flags.iter().find(|(s, _)| *s == a).unwrap().1.clone();
    // The task's registration stays; crit tracks the rest.
    assert!(
        of(own).contains("um") && !of(own).contains("uw"),
        "{}",
        of(own)
    );
    assert!(tracked(g.pid));
    // Its userfaultfd is refused by the dump (as CRIU without lazy
    // pages): the dump fails, the task is intact, and the tracking goes
    // back to a keeper for the next try.
    let d2 = tmp.path().join("d2");
    let r = crit(&[
        "dump",
        "-R",
        "-t",
        &g.pid.to_string(),
        "-D",
        d2.to_str().unwrap(),
        "--prev-images-dir",
        "../d1",
    ]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("userfaultfd") && e.lines().count() == 1, "{e}");
    assert!(tracked(g.pid), "the tracking is lost");
    let flags = vm_flags(g.pid);
    assert!(flags.iter().any(|(s, f)| *s == own && f.contains("um")));
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

#[test]
fn a_killed_pre_copy_leaves_no_tracking() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let g = start(tmp.path(), 512, 16, 20000, false, false);
    let img = tmp.path().join("img");
    let mut d = kit::crit()
        .args(["dump", "-R", "--pre-copy", "-t", &g.pid.to_string(), "-D"])
        .arg(&img)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Kill `crit dump` and its worker while the first round copies.
    let first = img.join(".crit-precopy/1");
    let t = Instant::now();
    while !std::fs::read_dir(&first).is_ok_and(|mut r| r.next().is_some()) {
        assert!(t.elapsed() < Duration::from_secs(10), "no round started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(d.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = d.wait();
    untracked_and_unharmed(g);
}

#[test]
fn without_kept_tracking_the_dump_says_so() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 8, 1, 100, false, false);
    let pid = g.pid.to_string();
    let full = tmp.path().join("full");
    ok(&crit(&[
        "dump",
        "-R",
        "-t",
        &pid,
        "-D",
        full.to_str().unwrap(),
    ]));
    for (prev, want) in [
        ("../full", "no memory tracking"),
        ("../nowhere", "not a previous dump"),
    ] {
        let d = tmp.path().join("next");
        let r = crit(&[
            "dump",
            "-R",
            "-t",
            &pid,
            "-D",
            d.to_str().unwrap(),
            "--prev-images-dir",
            prev,
        ]);
        let e = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{e}");
        assert!(e.contains(want) && e.lines().count() == 1, "{e}");
        assert!(
            kit::dump::images(&d).is_empty(),
            "a failed dump leaves no images"
        );
    }
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

#[test]
fn kernel_writes_into_pinned_buffers_are_not_missed() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bees");
    std::fs::write(&file, vec![b'B'; 65536]).unwrap();
    let result = tmp.path().join("result");
    let (child, _) = kit::proc::start_ready("uring", &[result.as_os_str(), file.as_os_str()]);
    let pid = child.id() as i32;
    let mut g = Gens {
        child,
        pid,
        result: result.clone(),
        own: None,
    };
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    ok(&crit(&[
        "pre-dump",
        "-t",
        &pid.to_string(),
        "-D",
        d1.to_str().unwrap(),
    ]));
    // The kernel fills the registered (pinned) buffer: no page fault in
    // the task, so no write the tracker could see; then the ring goes.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(&result).is_ok_and(|s| s.contains("res=65536")) {
        assert!(t.elapsed() < Duration::from_secs(5), "no read_fixed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ask(pid, &result).starts_with("OK expect B"));
    ok(&crit(&[
        "dump",
        "-t",
        &pid.to_string(),
        "-D",
        d2.to_str().unwrap(),
        "--prev-images-dir",
        "../d1",
    ]));
    let a = restore_and_ask(&mut g, &d2);
    assert!(a.starts_with("OK expect B"), "{a}");
}

#[test]
fn another_trees_tracking_is_refused_and_left_alone() {
    let _g = kit::restore::lock();
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start(ta.path(), 8, 1, 100, false, false);
    let mut b = start(tb.path(), 8, 1, 100, false, false);
    let a1 = ta.path().join("a1");
    ok(&crit(&[
        "pre-dump",
        "-t",
        &a.pid.to_string(),
        "-D",
        a1.to_str().unwrap(),
    ]));
    // B's dump on top of A's pre-dump: refused in one line, A still
    // tracked, and its own next dump builds on it.
    let g1 = ta.path().join("g1");
    let r = crit(&[
        "dump",
        "-R",
        "-t",
        &b.pid.to_string(),
        "-D",
        g1.to_str().unwrap(),
        "--prev-images-dir",
        "../a1",
    ]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("another tree") && e.lines().count() == 1, "{e}");
    assert!(tracked(a.pid) && !tracked(b.pid));
    let a2 = ta.path().join("a2");
    ok(&crit(&[
        "dump",
        "-R",
        "-t",
        &a.pid.to_string(),
        "-D",
        a2.to_str().unwrap(),
        "--prev-images-dir",
        "../a1",
    ]));
    assert!(stats(&a2).pages_skipped_parent > 1024);
    assert!(!tracked(a.pid));
    for g in [&mut a, &mut b] {
        assert!(ask(g.pid, &g.result).starts_with("OK"));
        kit::proc::kill_tree(g.pid);
        let _ = g.child.wait();
    }
}

/// `crit pre-dump` names itself in its steps (-v), not "crit dump".
#[test]
fn a_pre_dump_names_itself() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 8, 1, 100, false, false);
    let d = tmp.path().join("d");
    let pid = g.pid.to_string();
    let e = ok(&crit(&[
        "pre-dump",
        "-v",
        "-t",
        &pid,
        "-D",
        d.to_str().unwrap(),
    ]));
    assert!(e.contains("crit pre-dump: freezing the tree"), "{e}");
    assert!(!e.contains("crit dump"), "{e}");
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

/// Starts `crit ARGS` and returns it with its worker's pid, once DIR
/// holds something (pages are being copied).
fn worker_copying(args: &[&str], dir: &Path) -> (std::process::Child, i32) {
    let mut c = kit::crit();
    c.args(args);
    started_copying(c, dir)
}

/// Starts `c` (a crit command, stderr piped) and returns it with its
/// worker's pid, once DIR holds something.
// The caller waits for the child returned; on a timeout it is waited for here.
#[allow(clippy::zombie_processes)]
fn started_copying(mut c: std::process::Command, dir: &Path) -> (std::process::Child, i32) {
    let mut c = c.stderr(Stdio::piped()).spawn().unwrap();
    let front = c.id() as i32;
    let t = Instant::now();
    loop {
        let worker = kit::proc::children(front).first().copied();
        let busy = std::fs::read_dir(dir).is_ok_and(|mut r| r.next().is_some());
        if let (Some(w), true) = (worker, busy) {
            return (c, w);
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = c.kill();
            let _ = c.wait();
            panic!("no copy started");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ctrl-C on the terminal of a pre-dump (SIGINT to its whole process
/// group) while its worker copies pages: crit pre-dump passes it to the
/// worker, which stops at its next step and says so, removes the images
/// and lets the task go, untracked and unharmed, before crit pre-dump
/// returns. (It used to die of the signal
/// wherever it was, maybe in the middle of an injected call, saying
/// nothing.) A worker that was past its last step when the signal came
/// (1 GiB copies in about 0.4 s) finishes the pre-dump whole instead,
/// which is clean too.
#[test]
fn ctrl_c_stops_a_pre_dump_at_a_safe_point() {
    use nix::sys::signal::{kill, Signal};
    use std::os::unix::process::CommandExt;
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 1024, 16, 20000, false, false);
    let pid = g.pid.to_string();
    let pre = tmp.path().join("pre");
    let mut cmd = kit::crit();
    cmd.args(["pre-dump", "-t", &pid, "-D", pre.to_str().unwrap()])
        .process_group(0);
    kit::proc::with_default_signals(&mut cmd);
    let (c, _) = started_copying(cmd, &pre);
    let _ = kill(nix::unistd::Pid::from_raw(-(c.id() as i32)), Signal::SIGINT);
    let o = c.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    if e.contains("crit: pre-dumped") {
        // Finished before it looked: its keeper goes with the task.
        assert!(ask(g.pid, &g.result).starts_with("OK"));
        kit::proc::kill_tree(g.pid);
        let _ = g.child.wait();
        return;
    }
    assert!(
        e.contains("crit pre-dump was interrupted by SIGINT; stopped, letting the tree go"),
        "{e}"
    );
    // Gone by the time crit pre-dump returns.
    assert!(!pre.exists(), "{} is left: {e}", pre.display());
    untracked_and_unharmed(g);
}

/// SIGKILL to the worker of a pre-dump, and of a pre-copy dump during
/// its first round: each says which worker was killed, and nothing is
/// left of the images directory (the rounds' scratch directory
/// neither); the task runs on untracked.
#[test]
fn a_killed_worker_leaves_no_rounds_and_says_whose_it_was() {
    use nix::sys::signal::{kill, Signal};
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 512, 16, 20000, false, false);
    let pid = g.pid.to_string();
    let (pre, img) = (tmp.path().join("pre"), tmp.path().join("img"));
    let pre_dump = ["pre-dump", "-t", &pid, "-D", pre.to_str().unwrap()];
    let pre_copy = ["dump", "-R", "--pre-copy", "-t", &pid, "-D"];
    let pre_copy: Vec<&str> = pre_copy.into_iter().chain(img.to_str()).collect();
    let cases = [
        (&pre_dump[..], pre.clone(), pre.clone(), "pre-dump"),
        (
            &pre_copy[..],
            img.join(".crit-precopy/1"),
            img.clone(),
            "dump",
        ),
    ];
    for (args, busy, dir, what) in cases {
        let (c, worker) = worker_copying(args, &busy);
        let _ = kill(nix::unistd::Pid::from_raw(worker), Signal::SIGKILL);
        let o = c.wait_with_output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{e}");
        let said = format!("the {what} worker was killed by SIGKILL");
        assert!(e.contains(&said), "{e}");
        assert!(!dir.exists(), "{} is left: {e}", dir.display());
        assert!(settles_untracked(g.pid), "{what}: tracking left behind");
    }
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

/// Rounds a pre-copy dump killed with its worker left behind are
/// removed by the next dump into the directory.
#[test]
fn stale_rounds_are_removed_by_the_next_dump() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 8, 1, 100, false, false);
    let img = tmp.path().join("img");
    let stale = img.join(".crit-precopy/1");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("pages-1.img"), b"stale").unwrap();
    let pid = g.pid.to_string();
    ok(&crit(&[
        "dump",
        "-R",
        "-t",
        &pid,
        "-D",
        img.to_str().unwrap(),
    ]));
    assert!(!img.join(".crit-precopy").exists());
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

/// A task holding a userfaultfd of its own is refused by `--pre-copy`
/// before its first round: one line, nothing copied, nothing tracked.
#[test]
fn pre_copy_refuses_a_task_with_its_own_userfaultfd_at_once() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 16, 4, 5000, false, true);
    let img = tmp.path().join("img");
    let log = tmp.path().join("log");
    let r = crit(&[
        "dump",
        "-R",
        "--pre-copy",
        "-t",
        &g.pid.to_string(),
        "-D",
        img.to_str().unwrap(),
        "-o",
        log.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(
        e.contains("anon_inode:[userfaultfd]") && e.lines().count() == 1,
        "{e}"
    );
    let steps = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!steps.contains("freezing"), "{steps}");
    assert!(!img.exists());
    assert!(!tracked(g.pid));
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

/// A `--pre-copy` dump on top of a pre-dump that fails after its rounds
/// (here an action script refuses the final freeze) gives the trackers
/// it took back to a keeper of the pre-dump: the same dump can be run
/// again on top of it. Its rounds had replaced what the trackers knew
/// of the writes since the pre-dump, so the retry copies every page
/// (none left to the parent), and the restored task finds each as it
/// last wrote it. (The retry used to fail: "no memory tracking is
/// kept".)
#[test]
fn a_failed_pre_copy_on_a_pre_dump_can_be_run_again() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 64, 4, 20000, false, false);
    let pid = g.pid.to_string();
    let (d1, d2, d3) = (
        tmp.path().join("d1"),
        tmp.path().join("d2"),
        tmp.path().join("d3"),
    );
    ok(&crit(&["pre-dump", "-t", &pid, "-D", d1.to_str().unwrap()]));
    let refuse = "[ \"$CRTOOLS_SCRIPT_ACTION\" != pre-dump ]";
    let on_d1 = |d: &Path| -> Vec<String> {
        [
            "dump",
            "-t",
            &pid,
            "-D",
            d.to_str().unwrap(),
            "--prev-images-dir",
            "../d1",
            "--track-mem",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut a = on_d1(&d2);
    a.extend(["--pre-copy", "--action-script", refuse].map(String::from));
    let r = crit(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(kit::dump::images(&d2).is_empty(), "images left: {e}");
    assert!(tracked(g.pid), "the tracking was dropped: {e}");
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    let a = on_d1(&d3);
    ok(&crit(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let s = stats(&d3);
    assert_eq!(s.pages_skipped_parent, 0, "{s:?}");
    let a = restore_and_ask(&mut g, &d3);
    assert!(a.starts_with("OK 16384 "), "{a}");
}

/// A tracked task that exits after a pre-dump and stays a zombie (its
/// parent does not reap it): a failed `--pre-copy` on top of the
/// pre-dump still hands the tree's tracking back, and the dump run
/// again builds on it and keeps tracking. A zombie's pagemap answers
/// ESRCH, not ENOENT: taking or keeping the trackers failed on it, and
/// every tracker of the tree was lost ("taking the memory trackers: No
/// such process"). Found by a hostile probe.
#[test]
fn a_tracked_task_left_a_zombie_costs_no_tracking() {
    let _g = kit::restore::lock();
    let kit = kit::dump::Kit::new();
    let mut prog = kit.start("zombie", &[]);
    let w = prog.ready_numbers();
    let (root, live) = (w[0], w[2]);
    let (rs, d) = (root.to_string(), |n: &str| {
        kit.path(n).display().to_string()
    });
    ok(&crit(&["pre-dump", "-t", &rs, "-D", &d("d1")]));
    assert!(tracked(live));
    kit::proc::kill_tree(live);
    // The root never reaps it.
    while kit::proc::alive(live) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let refuse = "[ \"$CRTOOLS_SCRIPT_ACTION\" != pre-dump ]";
    let on_d1 = |dir: &str, extra: &[&str]| {
        let mut a = vec!["dump", "-R", "-t", &rs, "-D", dir];
        a.extend(["--prev-images-dir", "../d1", "--track-mem"]);
        a.extend(extra);
        crit(&a)
    };
    let r = on_d1(&d("d2"), &["--pre-copy", "--action-script", refuse]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("action script"), "{e}");
    assert!(tracked(root), "the tracking was dropped: {e}");
    ok(&on_d1(&d("d3"), &[]));
    assert!(tracked(root), "no tracking kept after the dump");
    kit::proc::kill_tree(root);
    let _ = prog.child.wait();
}

/// A process of uid 65534 holding the name of the keeper of trackers of
/// images directory `d` (after its device and inode), so that no keeper
/// of `d` can listen; it lets go once its stdin is closed.
fn squat_on_keeper(d: &Path) -> std::process::Child {
    use std::io::BufRead;
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(d).unwrap();
    let name = format!("crit-track:{}:{}", m.dev(), m.ino());
    let squat = "import socket, sys\n\
                 s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n\
                 s.bind('\\0' + sys.argv[1]); s.listen(1)\n\
                 print('ok', flush=True); sys.stdin.read()\n";
    let mut squatter = std::process::Command::new("python3")
        .args(["-c", squat, &name])
        .uid(65534)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (installed by .ci/run)");
    let mut line = String::new();
    std::io::BufReader::new(squatter.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ok");
    squatter
}

/// `dump -R --track-mem` on top of a pre-dump whose own trackers cannot
/// be kept (the keeper's name is held by another user) fails, and gives
/// the trackers it took back to the pre-dump: another dump on top of
/// the pre-dump then works, and the task finds every page. (The
/// trackers used to be lost: "no memory tracking is kept".)
#[test]
fn a_dump_whose_trackers_cannot_be_kept_gives_the_pre_dump_s_back() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 64, 4, 20000, false, false);
    let pid = g.pid.to_string();
    let (d1, d2, d3) = (
        tmp.path().join("d1"),
        tmp.path().join("d2"),
        tmp.path().join("d3"),
    );
    ok(&crit(&["pre-dump", "-t", &pid, "-D", d1.to_str().unwrap()]));
    std::fs::create_dir(&d2).unwrap();
    let mut squatter = squat_on_keeper(&d2);
    let on_d1 = |d: &Path, extra: &[&str]| {
        let mut a = vec!["dump", "-t", &pid, "-D", d.to_str().unwrap()];
        a.extend(["--prev-images-dir", "../d1", "--track-mem"]);
        a.extend(extra);
        crit(&a)
    };
    let r = on_d1(&d2, &["-R"]);
    drop(squatter.stdin.take());
    let _ = squatter.wait();
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("held by uid 65534"), "{e}");
    assert!(kit::dump::images(&d2).is_empty(), "images left: {e}");
    assert!(tracked(g.pid), "the tracking was dropped: {e}");
    ok(&on_d1(&d3, &[]));
    let a = restore_and_ask(&mut g, &d3);
    assert!(a.starts_with("OK 16384 "), "{a}");
}

/// A `--pre-copy` dump that fails after it made its set self-contained
/// (here `-R --track-mem`, whose keeper of trackers cannot listen: its
/// name, after the images directory's device and inode, is held by a
/// socket of another user) leaves no file in its directory: the pages
/// images the flattening wrote go with the rest. (They used to stay, and
/// the next dump there was refused: "already holds images".)
#[test]
fn a_pre_copy_that_fails_after_flattening_leaves_no_images() {
    use std::os::unix::fs::PermissionsExt;
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let g = start(tmp.path(), 64, 4, 20000, false, false);
    let pid = g.pid.to_string();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut squatter = squat_on_keeper(&d);
    let r = crit(&[
        "dump",
        "-R",
        "--track-mem",
        "--pre-copy",
        "-t",
        &pid,
        "-D",
        d.to_str().unwrap(),
    ]);
    drop(squatter.stdin.take());
    let _ = squatter.wait();
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    assert!(e.contains("held by uid 65534"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in {}: {left:?}", d.display());
    untracked_and_unharmed(g);
}

/// A second dump into an images directory that a dump is writing is
/// refused at once, and leaves the first one's rounds alone (it used to
/// take them for a killed dump's and remove them, and the first failed);
/// the first, held still meanwhile, then completes and restores.
#[test]
fn a_second_dump_into_a_busy_directory_is_refused() {
    use nix::sys::signal::{kill, Signal};
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 256, 4, 20000, false, false);
    let pid = g.pid.to_string();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    let (first, worker) = worker_copying(&["dump", "--pre-copy", "-t", &pid, "-D", ds], &d);
    let worker = nix::unistd::Pid::from_raw(worker);
    kill(worker, Signal::SIGSTOP).unwrap();
    let second = crit(&["dump", "-t", &pid, "-D", ds]);
    let rounds_kept = d.join(".crit-precopy").is_dir();
    kill(worker, Signal::SIGCONT).unwrap();
    let e = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{e}");
    assert!(
        e.contains("another crit command is using this images directory") && e.lines().count() == 1,
        "{e}"
    );
    assert!(
        rounds_kept,
        "the second dump removed the first one's rounds"
    );
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = restore_and_ask(&mut g, &d);
    assert!(a.starts_with("OK 65536 "), "{a}");
}

/// The keeper of a pre-dump's trackers is named after its directory's
/// device and inode. A directory made after that one was removed could
/// get the same inode number (ext4 reuses them at once, now and then),
/// and so the keeper's name, which another user's squatter had taken in
/// `a_pre_copy_that_fails_after_flattening_leaves_no_images`. The keeper
/// now holds the inode (as its working directory) while it lives, so no
/// new directory can have it.
#[test]
fn a_removed_pre_dump_directory_keeps_its_inode_while_its_keeper_lives() {
    use std::os::unix::fs::MetadataExt;
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 8, 1, 100, false, false);
    let pid = g.pid.to_string();
    let d = tmp.path().join("d");
    ok(&crit(&["pre-dump", "-t", &pid, "-D", d.to_str().unwrap()]));
    let m = std::fs::metadata(&d).unwrap();
    let name = format!("crit-track:{}:{}", m.dev(), m.ino());
    let keeper = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|e| {
            let c = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            c.split(|&b| b == 0).any(|a| a == name.as_bytes())
        })
        .map(|e| e.path())
        .expect("the keeper");
    std::fs::remove_dir_all(&d).unwrap();
    let held = std::fs::metadata(keeper.join("cwd")).unwrap();
    assert_eq!((held.dev(), held.ino()), (m.dev(), m.ino()));
    kit::proc::kill_tree(g.pid);
    let _ = g.child.wait();
}

/// Waits up to 5 s for `path` to hold `want` (a line the task writes).
fn says(path: &Path, want: &str) -> String {
    let t = Instant::now();
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.trim() == want || t.elapsed() > Duration::from_secs(5) {
            return s.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A task that exec'd between two pre-dumps has a new address space:
/// the pre-dump after the exec copies it whole and tracks it anew, so
/// the next one copies only what it wrote since (it used to keep the
/// old address space's tracker and copy the task whole every time); the
/// chain restores the pages the new image wrote (tests/programs/execer.c).
#[test]
fn a_task_that_execs_between_pre_dumps_is_tracked_again() {
    use nix::sys::signal::{kill, Signal};
    let _g = kit::restore::lock();
    let kit = kit::dump::Kit::new();
    let state = kit.path("state");
    let mut prog = kit.start("execer", &[state.to_str().unwrap()]);
    let pid = prog.pid.to_string();
    let d = |n: u32| kit.path(&format!("d{n}")).to_str().unwrap().to_string();
    let on = |n: u32| ["--prev-images-dir".to_string(), format!("../d{}", n - 1)];
    ok(&crit(&["pre-dump", "-t", &pid, "-D", &d(1)]));
    kill(nix::unistd::Pid::from_raw(prog.pid), Signal::SIGUSR1).unwrap();
    assert_eq!(says(&state, "execd"), "execd");
    for n in [2, 3] {
        let [a, b] = on(n);
        ok(&crit(&["pre-dump", "-t", &pid, "-D", &d(n), &a, &b]));
    }
    let (s2, s3) = (stats(Path::new(&d(2))), stats(Path::new(&d(3))));
    assert!(s2.pages_written >= 512, "{s2:?}");
    assert!(
        s3.pages_written < 64 && s3.pages_skipped_parent >= 512,
        "copied whole again after the exec: {s3:?}"
    );
    let [a, b] = on(4);
    ok(&crit(&["dump", "-t", &pid, "-D", &d(4), &a, &b]));
    let _ = prog.child.wait();
    ok(&kit::gens::restore(Path::new(&d(4)), &[]));
    kill(nix::unistd::Pid::from_raw(prog.pid), Signal::SIGUSR2).unwrap();
    assert_eq!(says(&state, "OK"), "OK");
    kit::proc::kill_tree(prog.pid);
}
