//! Tasks go back to their cgroups: a task moved into a cgroup of its own
//! (on this machine's pids hierarchy, or cgroup v2) is dumped, the
//! cgroup is removed, and the restore makes it again and puts the task
//! back in it, with its recorded property (pids.max) when the restore
//! made the cgroup or with `--manage-cgroups=full`; with
//! `--manage-cgroups=none` it stays in crit's; with `--cgroup-root` it
//! goes to the new root. `--freeze-cgroup` names a cgroup that holds the
//! root, or the dump is refused. A restore that fails removes the cgroups
//! it made and sets back what it wrote into existing ones.

mod kit;
use kit::host::ShmSegment;

use kit::dump::*;
use std::path::PathBuf;

/// The mount of the v1 hierarchy with `controller`, else of cgroup v2
/// (the bool: v1).
fn mounted(controller: &str) -> Option<(PathBuf, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2 = None;
    for l in info.lines() {
        let (left, right) = l.split_once(" - ")?;
        let mp = PathBuf::from(left.split(' ').nth(4)?);
        let r: Vec<&str> = right.split(' ').collect();
        if r[0] == "cgroup"
            && r.get(2)
                .is_some_and(|o| o.split(',').any(|x| x == controller))
        {
            return Some((mp, true));
        }
        if r[0] == "cgroup2" {
            v2 = Some((mp, false));
        }
    }
    v2
}

/// Where a cgroup of the test can be made: the pids hierarchy (v1) or
/// the unified one, with the name /proc/PID/cgroup lists it under. None
/// (the test skips, and says so) where neither is mounted.
fn hierarchy() -> Option<(PathBuf, &'static str)> {
    let h = mounted("pids").map(|(mp, v1)| (mp, if v1 { "pids" } else { "" }));
    if h.is_none() {
        eprintln!("skipped: neither a pids hierarchy nor cgroup v2 is mounted");
    }
    h
}

fn cgroup_of(pid: i32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            c.split(',')
                .any(|x| x == name)
                .then(|| p.to_string())
                .or_else(|| (name.is_empty() && c.is_empty()).then(|| p.to_string()))
        })
        .unwrap_or_default()
}

#[test]
fn tasks_go_back_to_their_cgroups() {
    let Some((mount, name)) = hierarchy() else {
        return;
    };
    let kit = Kit::new();
    let result = kit.path("result");
    let mut prog = kit.start("sysvshm", &[result.to_str().unwrap()]);
    let _seg = ShmSegment(
        prog.ready
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap(),
    );
    let rel = format!("crit-test-cg-{}/sub", std::process::id());
    let dir = mount.join(&rel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cgroup.procs"), prog.pid.to_string()).unwrap();
    assert_eq!(cgroup_of(prog.pid, name), format!("/{rel}"));
    // A property of the cgroup, recorded by the dump (pids.max, where
    // this hierarchy has the pids controller).
    let limit = dir.join("pids.max");
    let has_limit = limit.exists();
    if has_limit {
        std::fs::write(&limit, "77").unwrap();
    } else {
        eprintln!(
            "note: no pids.max in {}: properties not checked",
            dir.display()
        );
    }
    let pids_max = || {
        std::fs::read_to_string(&limit)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let img = kit.path("img");
    // --freeze-cgroup (runc's freezer cgroup) must hold the tree's root.
    let parent = dir.parent().unwrap().to_str().unwrap().to_string();
    let o = kit.dump(prog.pid, &img, &["--freeze-cgroup", &parent]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("pid {} is not in it", prog.pid)),
        "{}",
        stderr(&o)
    );
    assert!(alive(prog.pid));
    ok(&kit.dump(prog.pid, &img, &["--freeze-cgroup", dir.to_str().unwrap()]));
    let _ = prog.child.wait();
    // Gone since the dump: the restore makes it again.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::remove_dir(dir.parent().unwrap()).unwrap();
    let pidfile = kit.path("pid");
    let restore = |extra: &[&str]| {
        let mut a = vec!["restore", "-d", "-D", img.to_str().unwrap(), "--pidfile"];
        a.push(pidfile.to_str().unwrap());
        a.extend_from_slice(extra);
        ok(&kit.crit(&a));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let at = cgroup_of(pid, name);
        kill_tree(pid);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        at
    };
    // A restore that fails once the task is in its cgroup (at
    // post-restore) removes the cgroups it made.
    let script = action_script(&kit, "fail.sh", "post-restore", "exit 3");
    let o = kit.crit(&[
        "restore",
        "-d",
        "-D",
        img.to_str().unwrap(),
        "--action-script",
        script.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let left_after_failure = dir.parent().unwrap().exists();
    // Killed with SIGKILL there instead: its janitor removes them once
    // the task, which dies with crit, is gone.
    let killer = sigkill_script(&kit, "post-restore");
    let kill_at_post_restore = |extra: &[&str]| {
        let mut a = vec![
            "restore",
            "-d",
            "-D",
            img.to_str().unwrap(),
            "--action-script",
        ];
        a.push(killer.to_str().unwrap());
        a.extend_from_slice(extra);
        let o = kit.crit(&a);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&o.status),
            Some(9),
            "{}",
            stderr(&o)
        );
        reap(&[prog.pid], std::time::Duration::from_secs(10));
    };
    kill_at_post_restore(&[]);
    let left_after_kill = !eventually(|| !dir.parent().unwrap().exists());
    // Killed once more, with a process of the test's in the cgroup made,
    // which keeps the janitor at its work for a few seconds: the next
    // restore waits for it (it holds the restore's locks), and so ends
    // after it.
    let janitor_pid = kit.path("janitor.pid");
    let slow = action_script(
        &kit,
        "slow.sh",
        "post-restore",
        &format!(
            "{FIND_CRIT}for c in $(cat /proc/$p/task/*/children); do\n\
             [ \"$(cat /proc/$c/comm)\" = crit ] && echo $c > {}\ndone\n\
             sleep 3 >/dev/null 2>&1 &\necho $! > {}/cgroup.procs\nkill -9 $p",
            janitor_pid.display(),
            dir.display()
        ),
    );
    let o = kit.crit(&[
        "restore",
        "-d",
        "-D",
        img.to_str().unwrap(),
        "--action-script",
        slow.to_str().unwrap(),
    ]);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(9),
        "{}",
        stderr(&o)
    );
    reap(&[prog.pid], std::time::Duration::from_secs(10));
    let janitor: i32 = std::fs::read_to_string(&janitor_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let after_janitor = restore(&[]);
    // The janitor (crit's child, now the test's) ended before.
    let janitor_first = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(janitor),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    )
    .is_ok_and(|w| w != nix::sys::wait::WaitStatus::StillAlive);
    let back = restore(&[]);
    // Made again by the restore: its property comes back (soft).
    let made_limit = pids_max();
    // An existing cgroup keeps its own value in soft mode; full sets it.
    if has_limit {
        std::fs::write(&limit, "max").unwrap();
    }
    restore(&["--manage-cgroups=soft"]);
    let soft_limit = pids_max();
    // A failed restore sets what full wrote into an existing cgroup
    // back.
    let o = kit.crit(&[
        "restore",
        "-d",
        "-D",
        img.to_str().unwrap(),
        "--manage-cgroups=full",
        "--action-script",
        script.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let limit_after_failure = pids_max();
    kill_at_post_restore(&["--manage-cgroups=full"]);
    eventually(|| pids_max() == "max");
    let limit_after_kill = pids_max();
    restore(&["--manage-cgroups=full"]);
    let full_limit = pids_max();
    let stayed = restore(&["--manage-cgroups=none"]);
    // --cgroup-root: the root task's cgroup becomes the new root, for
    // every hierarchy and, named, for this one.
    let new_root = format!("/crit-test-cgroot-{}", std::process::id());
    let global = restore(&[&format!("--cgroup-root={new_root}")]);
    let ctrl = if name.is_empty() { "unified" } else { name };
    let named = restore(&[&format!("--cgroup-root={ctrl}:{new_root}/named")]);
    let mine = cgroup_of(std::process::id() as i32, name);
    for d in [&dir, &dir.parent().unwrap().to_path_buf()] {
        let _ = std::fs::remove_dir(d);
    }
    // --cgroup-root made the new root in every hierarchy.
    for m in cgroup_mounts() {
        for d in [format!("{new_root}/named"), new_root.clone()] {
            let _ = std::fs::remove_dir(m.join(d.trim_start_matches('/')));
        }
    }
    assert!(!left_after_failure, "a failed restore left its cgroups");
    assert!(!left_after_kill, "a killed restore left its cgroups");
    assert!(
        janitor_first,
        "a restore did not wait for the janitor of a killed one"
    );
    assert_eq!(after_janitor, format!("/{rel}"), "back after the janitor");
    assert_eq!(back, format!("/{rel}"), "back in its cgroup");
    if has_limit {
        assert_eq!(made_limit, "77", "pids.max of the cgroup the restore made");
        assert_eq!(
            soft_limit, "max",
            "soft leaves an existing cgroup's pids.max"
        );
        assert_eq!(full_limit, "77", "full sets pids.max");
        assert_eq!(
            limit_after_failure, "max",
            "a failed restore sets an existing cgroup's pids.max back"
        );
        assert_eq!(
            limit_after_kill, "max",
            "a killed restore's janitor sets it back"
        );
    }
    assert_eq!(stayed, mine, "--manage-cgroups=none leaves it in crit's");
    assert_eq!(global, new_root, "--cgroup-root=PATH");
    assert_eq!(
        named,
        format!("{new_root}/named"),
        "--cgroup-root={ctrl}:PATH"
    );
}

/// Where every cgroup hierarchy (v1 or v2) is mounted.
fn cgroup_mounts() -> Vec<std::path::PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            matches!(f.get(2), Some(&"cgroup") | Some(&"cgroup2")).then(|| f[1].into())
        })
        .collect()
}

/// Has `pid` write its view of its cgroups to `out`; returns it.
fn view(pid: i32, out: &std::path::Path) -> String {
    let _ = std::fs::remove_file(out);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let s = std::fs::read_to_string(out).unwrap_or_default();
        if !s.is_empty() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer: {}",
            std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A task in a cgroup namespace of its own (rooted at a cgroup of the
/// test, the task one level below): the dump records the namespace's
/// root as CRIU does (`cgns_prefix`), and the restore makes the
/// namespace again there, so the task sees the same cgroups as before.
#[test]
fn a_cgroup_namespace_comes_back() {
    let Some((mount, name)) = hierarchy() else {
        return;
    };
    let kit = Kit::new();
    let rel = format!("crit-test-cgns-{}", std::process::id());
    let dir = mount.join(&rel);
    std::fs::create_dir_all(dir.join("inner")).unwrap();
    let out = kit.path("view");
    let mut prog = kit.start("cgns", &[dir.to_str().unwrap(), out.to_str().unwrap()]);
    let before = view(prog.pid, &out);
    let img = kit.path("img");
    ok(&kit.dump(prog.pid, &img, &[]));
    let _ = prog.child.wait();
    let cg: crit::image::pb::CgroupEntry = one(&img, "cgroup.img", "CGROUP");
    let prefix = cg
        .sets
        .iter()
        .flat_map(|s| &s.ctls)
        .find(|m| m.name == name)
        .and_then(|m| m.cgns_prefix);
    let pidfile = kit.path("pid");
    ok(&kit.crit(&[
        "restore",
        "-d",
        "-D",
        img.to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
    ]));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let after = view(pid, &out);
    let host = cgroup_of(pid, name);
    let own_ns = std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).unwrap();
    let ours = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    kill_tree(pid);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    let _ = std::fs::remove_dir(dir.join("inner"));
    let _ = std::fs::remove_dir(&dir);
    assert!(
        before.lines().any(|l| l.ends_with(":/inner")),
        "the task saw itself in /inner: {before}"
    );
    assert_eq!(prefix, Some(rel.len() as u32 + 1), "cgns_prefix: /{rel}");
    assert_ne!(own_ns, ours, "a cgroup namespace of its own again");
    assert_eq!(after, before, "the same view of its cgroups");
    assert_eq!(host, format!("/{rel}/inner"));
}

/// A restore run under a cgroup's pids limit, so small that the kernel
/// refuses some of crit's threads or the tree's tasks: it fails with one
/// line (or, with room enough, restores), never with a panic, and
/// leaves no task behind.
#[test]
fn a_restore_under_a_pids_limit_fails_cleanly() {
    use std::os::unix::process::CommandExt;
    // The v1 pids hierarchy, or cgroup v2 where its root hands the pids
    // controller down (pids.max in a new cgroup).
    let Some((mount, _)) = hierarchy() else {
        return;
    };
    let probe = mount.join(format!("crit-test-pids-{}-probe", std::process::id()));
    let limits = std::fs::create_dir(&probe).is_ok() && probe.join("pids.max").exists();
    let _ = std::fs::remove_dir(&probe);
    if !limits {
        eprintln!("skipped: no pids controller in {}", mount.display());
        return;
    }
    let kit = Kit::new();
    let hb = kit.path("hb");
    let mut prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "64"]);
    let pid = prog.pid;
    let dir = kit.path("img");
    let o = kit.dump(pid, &dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = prog.child.wait();
    let mut failed = 0;
    for limit in [1, 2, 3, 4, 6, 64] {
        let cg = mount.join(format!("crit-test-pids-{}-{limit}", std::process::id()));
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("pids.max"), limit.to_string()).unwrap();
        let procs = std::ffi::CString::new(cg.join("cgroup.procs").to_str().unwrap()).unwrap();
        let mut cmd = kit::crit();
        cmd.args(["restore", "-d", "--shell-job", "-D"]).arg(&dir);
        // SAFETY: open and write are async-signal-safe; the child moves
        // itself into the limited cgroup before it execs crit.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let e = stderr(&out);
        assert!(!e.contains("panicked"), "pids.max {limit}: {e}");
        match out.status.code() {
            Some(0) => kill_tree(pid),
            Some(1) => {
                failed += 1;
                assert_eq!(e.trim().lines().count(), 1, "pids.max {limit}: {e}");
                assert!(!alive(pid), "pids.max {limit}: pid {pid} left: {e}");
            }
            other => panic!("pids.max {limit}: exit {other:?}: {e}"),
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::remove_dir(&cg).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} stays busy",
                cg.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    assert!(failed > 0, "no limit was small enough to fail the restore");
}

/// Where a freezer can be used: the v1 freezer hierarchy, or cgroup v2;
/// and the file and value that freeze a cgroup there.
fn freezer() -> Option<(PathBuf, &'static str, &'static str, &'static str)> {
    mounted("freezer").map(|(mp, v1)| match v1 {
        true => (mp, "freezer", "freezer.state", "FROZEN"),
        false => (mp, "", "cgroup.freeze", "1"),
    })
}

/// A restore into a frozen cgroup is refused naming it (the tasks would
/// stop in the freezer and the restore wait for them for good, deaf to
/// signals), and nothing is left.
#[test]
fn a_restore_into_a_frozen_cgroup_is_refused() {
    let Some((mount, name, file, value)) = freezer() else {
        eprintln!("skipped: no freezer (v1) or cgroup v2 here");
        return;
    };
    let kit = Kit::new();
    let hb = kit.path("hb");
    let mut prog = kit.start("heartbeat", &[hb.to_str().unwrap(), "4"]);
    let dir = mount.join(format!("crit-test-frozen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cgroup.procs"), prog.pid.to_string()).unwrap();
    assert_eq!(
        cgroup_of(prog.pid, name),
        format!("/{}", dir.file_name().unwrap().to_str().unwrap())
    );
    let img = kit.path("img");
    ok(&kit.dump(prog.pid, &img, &[]));
    let _ = prog.child.wait();
    std::fs::write(dir.join(file), value).unwrap();
    let o = kit.crit(&["restore", "-d", "--shell-job", "-D", img.to_str().unwrap()]);
    let e = stderr(&o);
    let thaw = if file == "freezer.state" {
        "THAWED"
    } else {
        "0"
    };
    std::fs::write(dir.join(file), thaw).unwrap();
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("frozen") && e.contains(dir.to_str().unwrap()),
        "{e}"
    );
    assert!(!alive(prog.pid), "a task is left: {e}");
    std::fs::remove_dir(&dir).unwrap();
}

/// The janitor of a restore takes a pidfd of every task of a tree
/// without a pid namespace of its own, more of them than crit's soft
/// limit of open files at its start (64 here): it still hears of the
/// cgroup made after them, and removes it when crit is killed.
#[test]
fn a_janitor_hears_of_every_task_of_a_tree_beyond_the_soft_limit() {
    use std::io::BufRead;
    let Some((mount, _)) = hierarchy() else {
        return;
    };
    let kit = Kit::new();
    let bin = kit.build("scale");
    let cg = mount.join(format!("crit-test-cg-many-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let result = kit.path("result");
    // 100 tasks, born in the cgroup.
    let mut root = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {} 100 1 16 {}",
            cg.display(),
            bin.display(),
            result.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(root.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY"), "{line}");
    let dir = kit.path("img");
    ok(&kit.dump(root.id() as i32, &dir, &["--shell-job"]));
    let _ = root.wait();
    kit::proc::reap_all();
    assert!(
        eventually(|| std::fs::remove_dir(&cg).is_ok()),
        "{} stays busy",
        cg.display()
    );
    let killer = sigkill_script(&kit, "post-restore");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 64 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_crit"))
        .args(["restore", "-d", "--shell-job", "--action-script"])
        .arg(&killer)
        .arg("-D")
        .arg(&dir)
        .output()
        .unwrap();
    let killed = std::os::unix::process::ExitStatusExt::signal(&o.status);
    let gone = eventually(|| !cg.exists());
    kit::proc::reap_all();
    let _ = std::fs::remove_dir(&cg);
    assert_eq!(killed, Some(9), "{}", stderr(&o));
    assert!(gone, "the killed restore's cgroup is left");
}
