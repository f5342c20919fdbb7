//! End-to-end dumps of a single-threaded counter-like task: the set of
//! images and their content, compared with what CRIU 4.2 writes for the
//! same kind of program (testdata fixture "counter"); a restore right
//! after the dump, before the dumped task is reaped.

mod kit;

use crit::image::pb;
use kit::dump::*;

fn counter_dump(kit: &Kit, extra: &[&str]) -> (Prog, std::path::PathBuf, u64) {
    let file = kit.path("reg.txt");
    let prog = kit.start("counter", &[file.to_str().unwrap()]);
    let addr = u64::from_str_radix(prog.ready.split_whitespace().nth(2).unwrap(), 16).unwrap();
    let dir = kit.path("img");
    let o = kit.dump(prog.pid, &dir, extra);
    ok(&o);
    (prog, dir, addr)
}

#[test]
fn counter_images_match_criu_set() {
    let kit = Kit::new();
    let (prog, dir, addr) = counter_dump(&kit, &[]);
    let pid = prog.pid;
    // Killed after the dump, as CRIU does.
    std::thread::sleep(std::time::Duration::from_millis(100));
    reap(&[pid], std::time::Duration::from_secs(2));
    assert!(!alive(pid), "the tree must be gone after a dump without -R");

    let names = images(&dir);
    for want in [
        format!("core-{pid}.img"),
        "fdinfo-2.img".into(),
        "files.img".into(),
        format!("fs-{pid}.img"),
        format!("ids-{pid}.img"),
        "inventory.img".into(),
        format!("mm-{pid}.img"),
        format!("pagemap-{pid}.img"),
        "pages-1.img".into(),
        "pstree.img".into(),
        "seccomp.img".into(),
        "timens-0.img".into(),
        "pipes-data.img".into(),
        "stats-dump".into(),
    ] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    roundtrip_all(&kit, &dir);

    // pstree
    let ps: Vec<pb::PstreeEntry> = all(&dir, "pstree.img", "PSTREE");
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].pid as i32, pid);
    assert_eq!(ps[0].ppid, 0);
    assert_eq!(ps[0].threads, vec![pid as u32]);

    // core: the fields CRIU 4.2 writes
    let core: pb::CoreEntry = one(&dir, &format!("core-{pid}.img"), "CORE");
    assert_eq!(core.mtype, pb::core_entry::March::X8664 as i32);
    let ti = core.thread_info.as_ref().unwrap();
    assert_eq!(ti.gpregs.cs, 0x33);
    assert_eq!(ti.gpregs.ss, 0x2b);
    assert_ne!(ti.gpregs.ip, 0);
    assert_ne!(ti.gpregs.fs_base, 0, "glibc sets fs_base");
    assert_ne!(ti.clear_tid_addr, 0, "glibc sets a tid address");
    assert_eq!(ti.tls.len(), 3);
    assert_eq!(ti.fpregs.st_space.len(), 32);
    assert_eq!(ti.fpregs.xmm_space.len(), 64);
    assert_ne!(ti.fpregs.mxcsr_mask, 0);
    let tc = core.tc.as_ref().unwrap();
    assert_eq!(tc.comm, "counter");
    assert_eq!(tc.task_state, 1);
    assert_eq!(tc.sigactions.len(), 62);
    assert_eq!(tc.rlimits.as_ref().unwrap().rlimits.len(), 16);
    assert!(tc.timers.is_some() && tc.signals_s.is_some() && tc.loginuid.is_some());
    let th = core.thread_core.as_ref().unwrap();
    assert_ne!(th.futex_rla, 0);
    assert_eq!(th.futex_rla_len, 24);
    assert!(th.rseq_entry.is_some() && th.creds.is_some() && th.sas.is_some());
    assert_eq!(th.sas.unwrap().ss_flags, 2, "no sigaltstack: SS_DISABLE");
    assert_eq!(th.comm.as_deref(), Some("counter"));

    // mm: heap, stack, vdso, vvar, vsyscall with CRIU's status bits
    let mm: pb::MmEntry = one(&dir, &format!("mm-{pid}.img"), "MM");
    let has = |bits: u32| mm.vmas.iter().any(|v| v.status & bits == bits);
    assert!(has(1 | 32 | 512), "heap: REGULAR|HEAP|ANON_PRIVATE");
    assert!(has(1 | 8 | 512), "vdso");
    assert!(has(4 | 512), "vsyscall");
    assert!(has(1 | 64), "file private mappings");
    assert!(
        mm.vmas.iter().any(|v| v.flags & 0x100 != 0),
        "stack has MAP_GROWSDOWN"
    );
    assert!(mm.mm_saved_auxv.len() >= 2 && mm.mm_saved_auxv.len() <= 44);
    assert!(mm.mm_brk >= mm.mm_start_brk);
    assert!(mm.dumpable.is_some() && mm.thp_disabled.is_some());
    let files = files(&dir);
    let exe = files.iter().find(|f| f.id == mm.exe_file_id).unwrap();
    assert!(exe.reg.as_ref().unwrap().name.ends_with("/counter"));
    assert_eq!(
        exe.reg.as_ref().unwrap().build_id.len(),
        5,
        "GNU build id in 5 words"
    );
    for v in mm.vmas.iter().filter(|v| v.status & 64 != 0) {
        assert!(
            files.iter().any(|f| f.id as u64 == v.shmid),
            "vma shmid is a file id"
        );
        assert_eq!(v.fdflags, Some(0));
    }

    // memory: the 4 MiB heap pattern is in the pages
    let mem = read_dumped(&dir, pid, addr, 4 << 20).expect("heap buffer pages dumped");
    for (i, b) in mem.iter().enumerate() {
        assert_eq!(*b, (i as u64 * 7 + 3) as u8, "heap byte {i}");
    }
    let pm: Vec<pb::PagemapEntry> =
        all::<pb::PagemapEntry>(&dir, &format!("pagemap-{pid}.img"), "PAGEMAP")
            .into_iter()
            .skip(1)
            .collect();
    assert!(
        pm.iter().all(|e| e.flags.unwrap() & 4 != 0),
        "PE_PRESENT on every entry"
    );
    assert!(
        pm.iter().any(|e| e.flags.unwrap() == 6),
        "anonymous memory is PE_LAZY|PE_PRESENT"
    );

    // files: /dev/null, the pipe (with its data), the regular file at offset 4
    let fdinfo: Vec<pb::FdinfoEntry> = all(&dir, "fdinfo-2.img", "FDINFO");
    let by_fd = |fd: u32| fdinfo.iter().find(|f| f.fd == fd).unwrap();
    let file_of = |fd: u32| files.iter().find(|f| f.id == by_fd(fd).id).unwrap().clone();
    let n = file_of(5);
    assert_eq!(n.r#type, 1);
    assert_eq!(n.reg.as_ref().unwrap().name, "/dev/null");
    let r = file_of(6);
    let reg = r.reg.as_ref().unwrap();
    assert!(reg.name.ends_with("/reg.txt"));
    assert_eq!(reg.pos, 4);
    assert_eq!(reg.size, Some(10));
    assert_eq!(reg.flags & 3, 2, "O_RDWR");
    let p3 = file_of(3);
    let p4 = file_of(4);
    assert_eq!(p3.r#type, 2);
    assert_eq!(
        p3.pipe.as_ref().unwrap().pipe_id,
        p4.pipe.as_ref().unwrap().pipe_id
    );
    assert_eq!(p4.pipe.as_ref().unwrap().flags & 3, 1, "write end O_WRONLY");
    let pd = std::fs::read(dir.join("pipes-data.img")).unwrap();
    assert!(pd.windows(9).any(|w| w == b"pipe-data"), "pipe data dumped");

    // fs, ids, inventory
    let fs: pb::FsEntry = one(&dir, &format!("fs-{pid}.img"), "FS");
    let cwd = files.iter().find(|f| f.id == fs.cwd_id).unwrap();
    assert_eq!(
        cwd.reg.as_ref().unwrap().name,
        kit.tmp.path().to_str().unwrap()
    );
    let root = files.iter().find(|f| f.id == fs.root_id).unwrap();
    assert_eq!(root.reg.as_ref().unwrap().name, "/");
    let ids: pb::TaskKobjIdsEntry = one(&dir, &format!("ids-{pid}.img"), "IDS");
    assert_eq!(
        (ids.vm_id, ids.files_id, ids.fs_id, ids.sighand_id),
        (2, 2, 2, 2)
    );
    let inv: pb::InventoryEntry = one(&dir, "inventory.img", "INVENTORY");
    assert_eq!(inv.img_version, 2);
    let rids = inv.root_ids.unwrap();
    assert_eq!(rids.vm_id, 1);
    assert_eq!(rids.net_ns_id, ids.net_ns_id);
    assert_eq!(rids.pid_ns_id, Some(1));
    assert_eq!(rids.net_ns_id, Some(2));
    assert_eq!(rids.time_ns_id, Some(5));
    assert_eq!(rids.cgroup_ns_id, Some(8));

    // inventory.img is the newest file: written last
    let mtime = |n: &str| std::fs::metadata(dir.join(n)).unwrap().modified().unwrap();
    for n in images(&dir) {
        assert!(
            mtime(&n) <= mtime("inventory.img"),
            "{n} written after inventory"
        );
    }
}

#[test]
fn leave_running_keeps_the_tree_going() {
    let kit = Kit::new();
    let (prog, dir, _) = counter_dump(&kit, &["-R"]);
    assert!(alive(prog.pid), "-R must leave the task running");
    let st = std::fs::read_to_string(format!("/proc/{}/status", prog.pid)).unwrap();
    assert!(st.contains("TracerPid:\t0"), "task detached");
    assert!(!st.contains("State:\tt"), "task not stopped");
    assert!(dir.join("inventory.img").exists());
    kill_tree(prog.pid);
}

#[test]
fn refuses_a_directory_with_images_and_leaves_the_tree() {
    let kit = Kit::new();
    let prog = kit.start("counter", &[kit.path("r.txt").to_str().unwrap()]);
    let dir = kit.path("img");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("inventory.img"), b"x").unwrap();
    let o = kit.dump(prog.pid, &dir, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("already holds images"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(alive(prog.pid));
    kill_tree(prog.pid);
}

#[test]
fn summary_line_reports_counts() {
    let kit = Kit::new();
    let (prog, _dir, _) = {
        let file = kit.path("reg.txt");
        let prog = kit.start("counter", &[file.to_str().unwrap()]);
        let dir = kit.path("img");
        let o = kit.dump(
            prog.pid,
            &dir,
            &["-R", "-o", kit.path("dump.log").to_str().unwrap()],
        );
        ok(&o);
        let e = stderr(&o);
        let last = e.trim().lines().last().unwrap().to_string();
        assert!(
            last.contains("1 task(s)") && last.contains("MiB written") && last.contains("frozen"),
            "{last}"
        );
        (prog, dir, 0)
    };
    assert!(std::fs::read_to_string(kit.path("dump.log"))
        .unwrap()
        .contains("frozen"));
    kill_tree(prog.pid);
}

/// On a terminal, the dump shows a live pages line (pages, MiB, MiB/s)
/// and ends it with the final count; piped, stderr has only the summary.
#[test]
fn pages_progress_only_on_a_terminal() {
    use std::io::Read;
    let kit = Kit::new();
    let file = kit.path("reg.txt");
    let prog = kit.start("counter", &[file.to_str().unwrap()]);
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut child = kit::crit()
        .args(["dump", "-R", "-t", &prog.pid.to_string(), "-D"])
        .arg(kit.path("tty-img"))
        .stderr(slave)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    drop(child);
    // Read until the slave side is closed everywhere (EIO).
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(status.success(), "{text}");
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("crit dump: pages "))
        .unwrap_or_else(|| panic!("no pages line in {text:?}"));
    // "crit dump: pages N of N (X MiB, Y MiB/s)": the last one is complete.
    let nums: Vec<&str> = line
        .trim_start_matches("\x1b[K")
        .trim_start_matches("crit dump: pages ")
        .split(' ')
        .collect();
    assert_eq!(nums[1], "of", "{line:?}");
    assert_eq!(nums[0], nums[2], "{line:?}");
    assert!(nums[0].parse::<u64>().unwrap() > 0, "{line:?}");
    assert!(line.ends_with("MiB/s)"), "{line:?}");
    assert!(text.contains("crit: dumped 1 task(s)"), "{text:?}");

    let piped = kit.dump(prog.pid, &kit.path("pipe-img"), &["-R"]);
    ok(&piped);
    let e = stderr(&piped);
    assert!(!e.contains("pages ") && e.contains("crit: dumped"), "{e}");
    kill_tree(prog.pid);
}

/// A restore right after the dump: the dumped task stays a zombie until
/// its parent (this test) reaps it a moment later; the restore waits for
/// its pid instead of calling it taken.
#[test]
fn restore_right_after_the_dump_waits_for_the_pid() {
    let kit = Kit::new();
    let (prog, dir, _) = counter_dump(&kit, &[]);
    let pid = prog.pid;
    let mut child = prog.child;
    let reaper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = child.wait();
    });
    let o = kit.crit(&["restore", "-d", "--shell-job", "-D", dir.to_str().unwrap()]);
    reaper.join().unwrap();
    let back = alive(pid);
    kill_tree(pid);
    ok(&o);
    assert!(back, "the task runs again with its pid");
}

/// A root that leads no session is dumped without --shell-job (the choice
/// is the restore's, which refuses it without the option), with a note
/// saying so; with the option there is no note.
#[test]
fn a_root_that_leads_no_session_is_dumped_with_a_note() {
    let kit = Kit::new();
    let prog = kit.start("counter", &[kit.path("n.txt").to_str().unwrap()]);
    let o = kit.dump(prog.pid, &kit.path("img"), &["-R"]);
    ok(&o);
    let e = stderr(&o);
    let note = format!("crit: note: pid {} leads no session", prog.pid);
    assert!(e.contains(&note) && e.contains("--shell-job"), "{e}");
    let o = kit.dump(prog.pid, &kit.path("img2"), &["-R", "--shell-job"]);
    ok(&o);
    assert!(!stderr(&o).contains("note:"), "{}", stderr(&o));
    kill_tree(prog.pid);
}

/// A dump whose stderr cannot be written (`2>/dev/full`) still succeeds
/// with status 0 and keeps its images: its summary, note and progress
/// lines are not worth a panic (status 101 before).
#[test]
fn an_unwritable_stderr_does_not_fail_a_dump() {
    let kit = Kit::new();
    let prog = kit.start("counter", &[kit.path("f.txt").to_str().unwrap()]);
    let dir = kit.path("img");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let st = kit::crit()
        .args(["dump", "-v", "-R", "-t", &prog.pid.to_string(), "-D"])
        .arg(&dir)
        .stderr(full)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
    assert!(dir.join("inventory.img").exists());
    let st = kit::crit()
        .args(["pre-dump", "-t", &prog.pid.to_string(), "-D"])
        .arg(kit.path("pre"))
        .stderr(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
    kill_tree(prog.pid);
}

/// A restore that waits for its tree keeps nothing of the images open
/// meanwhile (no lock, directory, mapping or log): the tmpfs holding
/// them unmounts while the tree runs, and the restore still ends with
/// the root's status.
#[test]
fn a_waiting_restore_lets_the_images_file_system_go() {
    use nix::mount::{mount, umount, umount2, MntFlags, MsFlags};
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }
    let kit = Kit::new();
    let fs = kit.path("fs");
    std::fs::create_dir(&fs).unwrap();
    mount(
        Some("tmpfs"),
        &fs,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _unmount = Unmount(fs.clone());
    let prog = kit.start("counter", &[kit.path("w.txt").to_str().unwrap()]);
    let pid = prog.pid;
    let dir = fs.join("img");
    ok(&kit.dump(pid, &dir, &[]));
    let mut child = prog.child;
    let _ = child.wait();
    let log = fs.join("restore.log");
    let mut c = spawn_crit(&[
        "restore",
        "--shell-job",
        "-v",
        "-o",
        log.to_str().unwrap(),
        "-D",
        dir.to_str().unwrap(),
    ]);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut unmounted = Err(nix::errno::Errno::EBUSY);
    while std::time::Instant::now() < end {
        if let Some(st) = c.try_wait().unwrap() {
            panic!("crit restore ended early: {st:?}");
        }
        if alive(pid) {
            unmounted = umount(&fs);
            if unmounted.is_ok() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let back = alive(pid);
    kill_tree(pid);
    let st = c.wait().unwrap();
    assert!(back, "the task runs again");
    assert_eq!(unmounted, Ok(()), "the images' tmpfs unmounts");
    assert_eq!(st.code(), Some(128 + 9), "the root's status");
}
