//! Files of many kinds, shared memory, signal handlers and timers, and
//! the images CRIU 4.2 writes for them (compare testdata kitchen).

mod kit;

use crit::image::pb;
use kit::dump::*;

#[test]
fn many_kinds_of_files() {
    let kit = Kit::new();
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let port = free_ports(2);
    let prog = kit.start("files", &[sdir.to_str().unwrap(), &port.to_string()]);
    let pid = prog.pid;
    let shared = u64::from_str_radix(prog.ready.split_whitespace().nth(2).unwrap(), 16).unwrap();
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    roundtrip_all(&kit, &dir);
    let names = images(&dir);
    // Only the write end of the stdout pipe is in the tree: no data entry.
    assert!(!names.contains(&"pipes-data.img".to_string()));
    for n in [
        "fifo-data.img",
        "ghost-file-1.img",
        "remap-fpath.img",
        "memfd.img",
    ] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("pagemap-shmem-"))
            .count(),
        2,
        "memfd and shared anon"
    );

    let fdinfo: Vec<pb::FdinfoEntry> = all(&dir, "fdinfo-2.img", "FDINFO");
    let files = files(&dir);
    let f = |fd: u32| {
        let e = fdinfo.iter().find(|x| x.fd == fd).unwrap();
        let file = files.iter().find(|x| x.id == e.id).unwrap().clone();
        assert_eq!(file.r#type, e.r#type, "fd {fd}: fdinfo type matches");
        file
    };
    // fifo: a FIFO entry with a REG entry for its path, and its data
    let fifo = f(3).fifo.unwrap();
    let regf = files.iter().find(|x| Some(x.id) == fifo.regf_id).unwrap();
    assert!(regf.reg.as_ref().unwrap().name.ends_with("/s/fifo"));
    let fd = std::fs::read(dir.join("fifo-data.img")).unwrap();
    assert!(fd.windows(9).any(|w| w == b"fifo-data"));
    // deleted file: REG + remap to a ghost with its contents
    let g = f(4).reg.unwrap();
    assert!(g.name.ends_with("/s/ghost.txt"));
    let remap: Vec<pb::RemapFilePathEntry> = all(&dir, "remap-fpath.img", "REMAP_FPATH");
    assert_eq!(remap[0].orig_id, g.id);
    assert_eq!(remap[0].remap_type, Some(1), "GHOST");
    let ghost = std::fs::read(dir.join(format!("ghost-file-{}.img", remap[0].remap_id))).unwrap();
    assert!(ghost.windows(14).any(|w| w == b"ghost-contents"));
    // eventfd, epoll, timerfd, signalfd, inotify
    assert_eq!(f(5).efd.unwrap().counter, 42);
    let ep = f(6).epfd.unwrap();
    assert_eq!(ep.tfd.len(), 1);
    // EPOLLIN, plus EPOLLERR|EPOLLHUP the kernel always adds (as in the fixture: 25).
    assert_eq!(
        (ep.tfd[0].tfd, ep.tfd[0].events, ep.tfd[0].data),
        (5, 25, 7)
    );
    let t = f(7).tfd.unwrap();
    assert_eq!((t.clockid, t.isec), (1, 5));
    assert!(t.vsec <= 5);
    assert_eq!(f(8).sgfd.unwrap().sigmask, 1 << (12 - 1), "SIGUSR2");
    let ify = f(9).ify.unwrap();
    assert_eq!(ify.wd.len(), 1);
    assert_eq!(ify.wd[0].mask & 0x300, 0x300, "IN_CREATE|IN_DELETE");
    assert_eq!(
        ify.wd[0].f_handle.path.as_deref(),
        Some(sdir.to_str().unwrap()),
        "watch path from its handle"
    );
    // memfd with its contents in shmem pages
    let m = f(10).memfd.unwrap();
    let inodes: Vec<pb::MemfdInodeEntry> = all(&dir, "memfd.img", "MEMFD_INODE");
    let ino = inodes
        .iter()
        .find(|i| i.inode_id == m.inode_id as u64)
        .unwrap();
    assert_eq!((ino.name.as_str(), ino.size), ("crit-memfd", 10));
    let pm: Vec<pb::PagemapHead> =
        all(&dir, &format!("pagemap-shmem-{}.img", ino.shmid), "PAGEMAP");
    let pages = std::fs::read(dir.join(format!("pages-{}.img", pm[0].pages_id))).unwrap();
    assert!(pages.starts_with(b"memfd-data"));
    // sockets: TCP listener, UDP, netlink
    let tcp = f(11).isk.unwrap();
    assert_eq!(
        (tcp.proto, tcp.state, tcp.src_port, tcp.backlog),
        (6, 10, port as u32, 5)
    );
    assert_eq!(tcp.src_addr, vec![u32::from_le_bytes([127, 0, 0, 1])]);
    assert_eq!(tcp.opts.reuseaddr, Some(true));
    assert!(tcp.tcp_opts.unwrap().keepidle.is_some());
    let udp = f(12).isk.unwrap();
    assert_eq!(
        (udp.proto, udp.state, udp.src_port),
        (17, 7, port as u32 + 1)
    );
    assert_eq!(f(13).nlsk.unwrap().protocol, 0, "NETLINK_ROUTE");
    // shared anonymous memory: a memfd-backed VMA, as CRIU 4.2 writes it
    let mm: pb::MmEntry = one(&dir, &format!("mm-{pid}.img"), "MM");
    let v = mm.vmas.iter().find(|v| v.start == shared).unwrap();
    assert_eq!(v.status, 1 | 128 | (1 << 14), "REGULAR|FILE_SHARED|MEMFD");
    let mf = files.iter().find(|x| x.id as u64 == v.shmid).unwrap();
    let anon = inodes
        .iter()
        .find(|i| i.inode_id == mf.memfd.as_ref().unwrap().inode_id as u64)
        .unwrap();
    assert_eq!(anon.name, "/dev/zero");
    let pm: Vec<pb::PagemapHead> = all(
        &dir,
        &format!("pagemap-shmem-{}.img", anon.shmid),
        "PAGEMAP",
    );
    let pages = std::fs::read(dir.join(format!("pages-{}.img", pm[0].pages_id))).unwrap();
    assert!(pages.starts_with(b"shared-anon"));
    // signal handler and interval timer
    let core: pb::CoreEntry = one(&dir, &format!("core-{pid}.img"), "CORE");
    let tc = core.tc.unwrap();
    assert!(tc.sigactions[8].sigaction > 1);
    assert!(tc.sigactions[8].flags & 0x1000_0000 != 0, "SA_RESTART");
    let real = tc.timers.unwrap().real;
    assert_eq!(real.isec, 100);
    assert!(real.vsec >= 99 && real.vsec <= 100);
}

/// Sockets and pipes are read through copies of their descriptors, their
/// close-on-exec flags asked of the task in runs of calls; where runs are
/// not possible (the task ignores SIGTRAP) from fdinfo. Both ways give
/// each descriptor its own flags.
#[test]
fn socket_and_pipe_flags_with_and_without_runs() {
    let kit = Kit::new();
    for mode in ["plain", "ignore-trap"] {
        let prog = kit.start("fdflags", &[mode]);
        let dir = kit.path(&format!("img-{mode}"));
        ok(&kit.dump(prog.pid, &dir, &["-R"]));
        let fdinfo: Vec<pb::FdinfoEntry> = all(&dir, "fdinfo-2.img", "FDINFO");
        let files = files(&dir);
        let entry = |fd: u32| fdinfo.iter().find(|x| x.fd == fd).unwrap();
        let cloexec: Vec<u32> = (3..=6).map(|fd| entry(fd).flags).collect();
        assert_eq!(cloexec, [1, 0, 0, 1], "{mode}: close-on-exec of fds 3-6");
        let file = |fd: u32| files.iter().find(|f| f.id == entry(fd).id).unwrap();
        let sk_flags = |fd: u32| file(fd).usk.as_ref().unwrap().flags;
        assert_eq!(sk_flags(3) & 0o4000, 0o4000, "{mode}: fd 3 O_NONBLOCK");
        assert_eq!(sk_flags(4) & 0o4000, 0, "{mode}: fd 4 blocking");
        let pipe_flags = |fd: u32| file(fd).pipe.as_ref().unwrap().flags & 0o3;
        assert_eq!((pipe_flags(5), pipe_flags(6)), (0, 1), "{mode}: pipe ends");
        kill_tree(prog.pid);
    }
}

#[test]
fn terminal_needs_shell_job() {
    let kit = Kit::new();
    // Give the program a pseudo-terminal as stdin.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let bin = kit.build("counter");
    let mut child = std::process::Command::new(&bin)
        .arg(kit.path("r.txt"))
        .stdin(std::process::Stdio::from(pty.slave))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid = child.id() as i32;
    let o = kit.dump(pid, &kit.path("img"), &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!("pid {pid} fd 0")) && e.contains("--shell-job"),
        "{e}"
    );
    assert!(alive(pid));
    let o = kit.dump(pid, &kit.path("img2"), &["--shell-job"]);
    ok(&o);
    roundtrip_all(&kit, &kit.path("img2"));
    let _ = child.wait();
    drop(pty.master);
}

#[test]
fn deleted_executable_becomes_a_ghost_file() {
    let kit = Kit::new();
    let bin = kit.build("counter");
    let copy = kit.path("gone-counter");
    std::fs::copy(&bin, &copy).unwrap();
    let mut child = std::process::Command::new(&copy)
        .arg(kit.path("r.txt"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    std::fs::remove_file(&copy).unwrap();
    let pid = child.id() as i32;
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    let _ = child.wait();
    roundtrip_all(&kit, &dir);
    let mm: pb::MmEntry = one(&dir, &format!("mm-{pid}.img"), "MM");
    let files = files(&dir);
    let exe = files.iter().find(|f| f.id == mm.exe_file_id).unwrap();
    assert_eq!(exe.reg.as_ref().unwrap().name, copy.to_str().unwrap());
    // The executable's mappings share its file id, and one ghost holds it.
    assert!(mm.vmas.iter().any(|v| v.shmid == mm.exe_file_id as u64));
    let remap: Vec<pb::RemapFilePathEntry> = all(&dir, "remap-fpath.img", "REMAP_FPATH");
    assert_eq!(remap.len(), 1);
    assert_eq!(remap[0].orig_id, mm.exe_file_id);
    let ghost = std::fs::read(dir.join(format!("ghost-file-{}.img", remap[0].remap_id))).unwrap();
    let orig = std::fs::read(&bin).unwrap();
    assert!(
        ghost.ends_with(&orig),
        "the ghost holds the executable's bytes"
    );
}
