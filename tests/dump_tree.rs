//! Threads, process trees, sessions and process groups.

mod kit;

use crit::image::pb;
use kit::dump::*;

#[test]
fn threads_each_get_a_core() {
    let kit = Kit::new();
    let prog = kit.start("threads", &[]);
    let w: Vec<i32> = prog.ready_numbers();
    let (pid, t1, t2) = (w[0], w[1], w[2]);
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    roundtrip_all(&kit, &dir);
    let ps: Vec<pb::PstreeEntry> = all(&dir, "pstree.img", "PSTREE");
    assert_eq!(ps.len(), 1);
    let mut th = ps[0].threads.clone();
    th.sort();
    let mut want = vec![pid as u32, t1 as u32, t2 as u32];
    want.sort();
    assert_eq!(th, want);
    assert_eq!(ps[0].threads[0], pid as u32, "leader first");
    let leader: pb::CoreEntry = one(&dir, &format!("core-{pid}.img"), "CORE");
    assert!(leader.tc.is_some());
    let c1: pb::CoreEntry = one(&dir, &format!("core-{t1}.img"), "CORE");
    let c2: pb::CoreEntry = one(&dir, &format!("core-{t2}.img"), "CORE");
    assert!(
        c1.tc.is_none() && c2.tc.is_none(),
        "thread cores have no task part"
    );
    let usr1 = 1u64 << (10 - 1);
    let usr2 = 1u64 << (12 - 1);
    let tc1 = c1.thread_core.as_ref().unwrap();
    let tc2 = c2.thread_core.as_ref().unwrap();
    assert!(
        tc1.blk_sigset.unwrap() & usr1 != 0,
        "thread 1 blocks SIGUSR1"
    );
    assert!(
        tc2.blk_sigset.unwrap() & usr2 != 0,
        "thread 2 blocks SIGUSR2"
    );
    let sas = tc2.sas.unwrap();
    assert_eq!(sas.ss_size, 65536, "thread 2 has a sigaltstack");
    assert_eq!(sas.ss_flags, 0);
    assert_eq!(tc1.sas.unwrap().ss_flags, 2);
    // Distinct stacks, TLS bases and tid addresses.
    let fs = |c: &pb::CoreEntry| c.thread_info.as_ref().unwrap().gpregs.fs_base;
    assert!(fs(&leader) != fs(&c1) && fs(&c1) != fs(&c2));
    let tid_addr = |c: &pb::CoreEntry| c.thread_info.as_ref().unwrap().clear_tid_addr;
    assert!(tid_addr(&c1) != 0 && tid_addr(&c1) != tid_addr(&c2));
    assert!(tc1.futex_rla != tc2.futex_rla);
    // One mm, one fd table for the whole process.
    assert!(dir.join(format!("mm-{pid}.img")).exists());
    assert!(!dir.join(format!("mm-{t1}.img")).exists());
}

#[test]
fn tree_with_groups_and_sessions() {
    let kit = Kit::new();
    let prog = kit.start("sessions", &[]);
    let w: Vec<i32> = prog.ready_numbers();
    let (root, child, gc) = (w[0], w[1], w[2]);
    let dir = kit.path("img");
    ok(&kit.dump(root, &dir, &[]));
    std::thread::sleep(std::time::Duration::from_millis(50));
    reap(&[root, child, gc], std::time::Duration::from_secs(2));
    assert!(
        !alive(root) && !alive(child) && !alive(gc),
        "whole tree killed"
    );
    roundtrip_all(&kit, &dir);
    let ps: Vec<pb::PstreeEntry> = all(&dir, "pstree.img", "PSTREE");
    let pids: Vec<i32> = ps.iter().map(|p| p.pid as i32).collect();
    assert_eq!(pids, vec![root, child, gc], "depth-first order");
    let e = |pid: i32| ps.iter().find(|p| p.pid as i32 == pid).unwrap().clone();
    assert_eq!(e(root).ppid, 0);
    assert_eq!(e(child).ppid as i32, root);
    assert_eq!(e(gc).ppid as i32, child);
    assert_eq!(e(child).pgid as i32, child, "child leads its own group");
    assert_eq!(e(child).sid, e(root).sid);
    assert_eq!(e(gc).sid as i32, gc, "grandchild leads its own session");
    assert_eq!(e(gc).pgid as i32, gc);
    for p in [root, child, gc] {
        for img in ["core", "mm", "pagemap", "fs", "ids"] {
            assert!(dir.join(format!("{img}-{p}.img")).exists(), "{img}-{p}.img");
        }
    }
    // Separate mm/fd tables, each numbered; the shared pipe has one id.
    let ids: Vec<pb::TaskKobjIdsEntry> = [root, child, gc]
        .iter()
        .map(|p| one(&dir, &format!("ids-{p}.img"), "IDS"))
        .collect();
    assert_eq!(
        ids.iter().map(|i| i.vm_id).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let f_root: Vec<pb::FdinfoEntry> =
        all(&dir, &format!("fdinfo-{}.img", ids[0].files_id), "FDINFO");
    let f_child: Vec<pb::FdinfoEntry> =
        all(&dir, &format!("fdinfo-{}.img", ids[1].files_id), "FDINFO");
    let id_of = |v: &Vec<pb::FdinfoEntry>, fd: u32| v.iter().find(|f| f.fd == fd).map(|f| f.id);
    assert_eq!(
        id_of(&f_root, 3),
        id_of(&f_child, 3),
        "inherited pipe end keeps one file id"
    );
    // The root's SIGUSR1 handler, with its restorer.
    let core: pb::CoreEntry = one(&dir, &format!("core-{root}.img"), "CORE");
    // Signals 1..64 without SIGKILL and SIGSTOP: SIGUSR1 (10) is the 9th.
    let sa = &core.tc.as_ref().unwrap().sigactions[8];
    assert!(sa.sigaction > 1, "SIGUSR1 handler recorded");
    assert_ne!(sa.restorer, 0, "sa_restorer recorded");
    assert!(sa.flags & 0x0400_0000 != 0, "SA_RESTORER");
}

#[test]
fn pending_signals_are_dumped_and_stay_queued() {
    let kit = Kit::new();
    let prog = kit.start("pending", &[]);
    let pid = prog.pid;
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &["-R"]));
    roundtrip_all(&kit, &dir);
    let core: pb::CoreEntry = one(&dir, &format!("core-{pid}.img"), "CORE");
    let signo = |e: &pb::SiginfoEntry| i32::from_ne_bytes(e.siginfo[0..4].try_into().unwrap());
    let private = &core
        .thread_core
        .as_ref()
        .unwrap()
        .signals_p
        .as_ref()
        .unwrap()
        .signals;
    assert_eq!(
        private.iter().map(signo).collect::<Vec<_>>(),
        vec![10],
        "SIGUSR1 for the thread"
    );
    let shared = &core
        .tc
        .as_ref()
        .unwrap()
        .signals_s
        .as_ref()
        .unwrap()
        .signals;
    let rtmin = 34;
    assert_eq!(
        shared.iter().map(signo).collect::<Vec<_>>(),
        vec![12, rtmin, rtmin]
    );
    // siginfo of sigqueue carries the value (si_value at offset 24).
    let val = |e: &pb::SiginfoEntry| i32::from_ne_bytes(e.siginfo[24..28].try_into().unwrap());
    assert_eq!((val(&shared[1]), val(&shared[2])), (41, 42));
    assert!(private.iter().all(|e| e.siginfo.len() == 128));
    // Still queued: a second dump sees the same.
    let dir2 = kit.path("img2");
    ok(&kit.dump(pid, &dir2, &[]));
    let core2: pb::CoreEntry = one(&dir2, &format!("core-{pid}.img"), "CORE");
    assert_eq!(core2.tc.unwrap().signals_s.unwrap().signals.len(), 3);
}

#[test]
fn posix_timers_are_dumped() {
    let kit = Kit::new();
    let prog = kit.start("timers", &[kit.path("hb").to_str().unwrap()]);
    let pid = prog.pid;
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    roundtrip_all(&kit, &dir);
    let core: pb::CoreEntry = one(&dir, &format!("core-{pid}.img"), "CORE");
    let mut t = core.tc.unwrap().timers.unwrap().posix;
    t.sort_by_key(|x| x.it_id);
    assert_eq!(t.len(), 2);
    let (a, b) = (&t[0], &t[1]);
    assert_eq!(
        (a.clock_id, a.si_signo, a.it_sigev_notify, a.sival_ptr),
        (1, 10, 0, 0x1234)
    );
    assert_eq!(a.isec, 50);
    assert!(a.vsec >= 98 && a.vsec <= 100, "{}", a.vsec);
    assert_eq!(
        (b.clock_id, b.it_sigev_notify, b.vsec, b.vnsec),
        (0, 1, 0, 0)
    );
}

#[test]
fn seccomp_filters_are_dumped_as_criu_does() {
    let kit = Kit::new();
    let prog = kit.start("seccomp", &[]);
    let pid = prog.pid;
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    roundtrip_all(&kit, &dir);
    let core: pb::CoreEntry = one(&dir, &format!("core-{pid}.img"), "CORE");
    let th = core.thread_core.unwrap();
    assert_eq!(th.seccomp_mode, Some(2));
    let sc: pb::SeccompEntry = one(&dir, "seccomp.img", "SECCOMP");
    assert_eq!(sc.seccomp_filters.len(), 2);
    // As CRIU writes them: newest (3 instructions) first; the oldest (1)
    // points back at it and is the thread's filter.
    assert_eq!(sc.seccomp_filters[0].filter.len(), 24);
    assert_eq!(sc.seccomp_filters[0].prev, None);
    assert_eq!(sc.seccomp_filters[1].filter.len(), 8);
    assert_eq!(sc.seccomp_filters[1].prev, Some(0));
    assert_eq!(th.seccomp_filter, Some(1));
    assert_eq!(th.creds.unwrap().no_new_privs, Some(1));
}

#[test]
fn stopped_task_is_dumped_as_stopped_and_stays_stopped() {
    let kit = Kit::new();
    let prog = kit.start("counter", &[kit.path("r.txt").to_str().unwrap()]);
    let pid = prog.pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    // Stopped once /proc says so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .contains("State:\tT (stopped)")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &["-R"]));
    roundtrip_all(&kit, &dir);
    let core: pb::CoreEntry = one(&dir, &format!("core-{pid}.img"), "CORE");
    assert_eq!(core.tc.unwrap().task_state, 3, "TASK_STOPPED");
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        st.contains("State:\tT (stopped)"),
        "still stopped after -R:\n{st}"
    );
    assert!(st.contains("TracerPid:\t0"));
    kill_tree(pid);
}

#[test]
fn zombie_child_is_dumped_as_criu_does() {
    let kit = Kit::new();
    let prog = kit.start("zombie", &[]);
    let w: Vec<i32> = prog.ready_numbers();
    let (root, zombie, live) = (w[0], w[1], w[2]);
    let dir = kit.path("img");
    ok(&kit.dump(root, &dir, &[]));
    roundtrip_all(&kit, &dir);
    let ps: Vec<pb::PstreeEntry> = all(&dir, "pstree.img", "PSTREE");
    let pids: Vec<i32> = ps.iter().map(|p| p.pid as i32).collect();
    assert_eq!(pids, vec![root, zombie, live]);
    let z = ps.iter().find(|p| p.pid as i32 == zombie).unwrap();
    assert_eq!(
        (z.ppid as i32, z.threads.clone()),
        (root, vec![zombie as u32])
    );
    let core: pb::CoreEntry = one(&dir, &format!("core-{zombie}.img"), "CORE");
    let tc = core.tc.unwrap();
    assert_eq!(tc.task_state, 2, "TASK_DEAD, as CRIU writes zombies");
    assert_eq!(tc.exit_code, 3 << 8, "wait status of exit(3)");
    assert!(core.thread_info.is_none() && core.thread_core.is_none());
    for img in ["mm", "ids", "fs"] {
        assert!(!dir.join(format!("{img}-{zombie}.img")).exists());
    }
    assert!(dir.join(format!("mm-{live}.img")).exists());
}

/// `crit restore` killed with SIGKILL while it lets a tree of 64 tasks
/// go, the moment the test sees one of them untraced: the tasks crit
/// still held die with it, and its janitor ends those it had let go, so
/// no part of the tree runs on without the rest. If crit was through
/// with them all by then, the whole tree runs, and each of its tasks
/// finds its memory and descriptors as they were.
#[test]
fn a_restore_killed_while_it_lets_a_tree_go_leaves_all_of_it_or_none() {
    const TASKS: usize = 64;
    let kit = Kit::new();
    let result = kit.path("result");
    let mut prog = kit.start("scale", &["64", "1", "4", result.to_str().unwrap()]);
    let pids = kit::proc::tree(prog.pid);
    assert_eq!(pids.len(), TASKS, "{pids:?}");
    let dir = kit.path("img");
    ok(&kit.dump(prog.pid, &dir, &[]));
    let _ = prog.child.wait();
    reap(&pids, std::time::Duration::from_secs(10));
    // At pre-resume, the last step before the tasks are let go.
    let hold = Hold::new(&kit, "pre-resume");
    // A few of the tasks, to see the first let go within microseconds.
    let watched: Vec<i32> = pids
        .iter()
        .take(4)
        .chain(pids.iter().rev().take(4))
        .copied()
        .collect();
    for round in 0..3 {
        hold.reset();
        // Opened by the tasks; its size is checked at restore.
        std::fs::File::options()
            .write(true)
            .open(&result)
            .unwrap()
            .set_len(0)
            .unwrap();
        let err = kit.path("restore.err");
        let mut c = kit::crit()
            .args(["restore", "-d", "--shell-job", "--action-script"])
            .arg(&hold.script)
            .arg("-D")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        assert!(
            hold.reached(),
            "round {round}: no pre-resume: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        // The janitor decides once crit is dead; the tree is as it leaves
        // it (before, a task that died with crit may still show).
        let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        let janitor = kit::proc::children(c.id() as i32)
            .into_iter()
            .find(|&p| comm(p).trim() == "crit")
            .and_then(|j| crit::sys::pidfd::pidfd_open(j).ok())
            .expect("the restore's janitor");
        hold.release();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while watched.iter().all(|&p| kit::proc::traced(p)) && std::time::Instant::now() < end {}
        kill_tree(c.id() as i32);
        let _ = c.wait();
        // Those let go are ended by the janitor, the others die with crit.
        let mut janitor = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&janitor),
            nix::poll::PollFlags::POLLIN,
        )];
        let janitor_ended = nix::poll::poll(&mut janitor, 20_000u16).is_ok_and(|n| n == 1);
        let running = pids.iter().filter(|&&p| alive(p)).count();
        let settled = janitor_ended
            && (running == 0 || (running == TASKS && pids.iter().all(|&p| !kit::proc::traced(p))));
        if running == TASKS {
            for &p in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGUSR1,
                );
            }
            let lines = || std::fs::read_to_string(&result).unwrap_or_default();
            let checked = eventually(|| lines().lines().count() == TASKS);
            let text = lines();
            pids.iter().for_each(|&p| kill_tree(p));
            reap(&pids, std::time::Duration::from_secs(10));
            assert!(checked, "round {round}: {text}");
            assert!(
                text.lines().all(|l| l.starts_with("OK")),
                "round {round}: {text}"
            );
        }
        pids.iter().for_each(|&p| kill_tree(p));
        reap(&pids, std::time::Duration::from_secs(10));
        eprintln!("round {round}: {running} of {TASKS} tasks ran on");
        assert!(
            settled,
            "round {round}: {running} of {TASKS} tasks run on after crit was killed"
        );
    }
}
