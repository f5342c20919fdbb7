//! Unix sockets of every kind, and peers outside the tree.

mod kit;
use kit::host::sock_ino;

use crit::image::entry::EntryReader;
use crit::image::pb;
use crit::image::typed::Mapped;
use kit::dump::*;
use std::path::{Path, PathBuf};

fn usk_by_fd(dir: &Path, files_id: u32, fd: u32) -> pb::UnixSkEntry {
    let fdinfo: Vec<pb::FdinfoEntry> = all(dir, &format!("fdinfo-{files_id}.img"), "FDINFO");
    let id = fdinfo
        .iter()
        .find(|f| f.fd == fd)
        .unwrap_or_else(|| panic!("fd {fd}"))
        .id;
    assert_eq!(
        fdinfo.iter().find(|f| f.fd == fd).unwrap().r#type,
        5,
        "fd {fd} is UNIXSK"
    );
    files(dir)
        .into_iter()
        .find(|f| f.id == id)
        .unwrap()
        .usk
        .unwrap()
}

fn queue_of(dir: &Path, id: u32) -> Vec<Vec<u8>> {
    let Ok(m) = Mapped::open(&dir.join("sk-queues.img")) else {
        return vec![];
    };
    let mut src = m.source();
    let mut rd = EntryReader::expect(&mut src, "SK_QUEUES").unwrap();
    let mut out = vec![];
    while let Some(e) = rd.next_entry().unwrap() {
        let p: pb::SkPacketEntry = e.decode().unwrap();
        if p.id_for == id {
            out.push(e.raw_payload.to_vec());
        }
    }
    out
}

#[test]
fn every_kind_of_unix_socket() {
    let kit = Kit::new();
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let prog = kit.start("usk", &[sdir.to_str().unwrap()]);
    let pid = prog.pid;
    let inos: Vec<u32> = (3..=19).map(|fd| sock_ino(pid, fd)).collect();
    let ino = |fd: i32| inos[(fd - 3) as usize];
    let dir = kit.path("img");
    let o = kit.dump(pid, &dir, &[]);
    ok(&o);
    roundtrip_all(&kit, &dir);
    let u = |fd: u32| usk_by_fd(&dir, 2, fd);
    let q = |fd: u32| queue_of(&dir, u(fd).id);

    // socketpairs
    let (a, b) = (u(3), u(4));
    assert_eq!((a.r#type, a.state, b.peer, a.peer), (1, 1, ino(3), ino(4)));
    assert_eq!(a.ns_id, Some(2), "net ns id as CRIU");
    assert_eq!(
        (a.fown.pid as i32, a.fown.pid_type, a.fown.signum),
        (pid, 1, 12),
        "F_SETOWN/F_SETSIG recorded"
    );
    assert_eq!(b.fown.pid, 0);
    assert_eq!(q(3), vec![b"stream-b-to-a".to_vec()]);
    assert_eq!(q(4), vec![b"stream-a-to-b".to_vec()]);
    assert_eq!(u(5).r#type, 2);
    assert_eq!(
        q(6),
        vec![b"dgram-1".to_vec(), b"dgram-22".to_vec()],
        "message boundaries kept"
    );
    assert_eq!(u(7).r#type, 5);
    assert_eq!(u(7).shutdown, Some(2), "SHUT_WR");
    assert_eq!(u(8).shutdown, Some(1), "peer sees READ shut");
    assert_eq!(q(8), vec![b"seqpacket-1".to_vec()]);
    assert!(q(7).is_empty());

    // listener with an accepted and a pending connection
    let srv = format!("{}/srv.sock\0", sdir.display()).into_bytes();
    let l = u(9);
    assert_eq!((l.state, l.backlog, l.peer), (10, 8, 0));
    assert_eq!(l.name, srv);
    assert_eq!(
        l.file_perms.unwrap().mode & 0o170000,
        0o140000,
        "socket file mode"
    );
    assert_eq!(u(10).peer, ino(11));
    assert_eq!(u(11).peer, ino(10));
    assert_eq!(
        u(11).name,
        srv,
        "accepted socket carries the listener's name"
    );
    assert_eq!(q(10), vec![b"server-to-client".to_vec()]);
    assert_eq!(q(11), vec![b"client-to-server".to_vec()]);
    assert_eq!(
        u(12).peer,
        ino(9),
        "pending connection: the listener is its peer, as CRIU writes"
    );

    // abstract seqpacket listener
    let an = format!("\0crit-test-abstract-{pid}").into_bytes();
    assert_eq!(u(13).name, an);
    assert_eq!((u(13).r#type, u(13).state), (5, 10));
    assert!(u(13).file_perms.is_none());
    assert_eq!(u(15).name, an);
    assert_eq!(q(15), vec![b"abstract-msg".to_vec()]);

    // bound dgram with queued messages from a connected sender
    assert_eq!(u(17).peer, ino(16));
    assert_eq!(
        q(16),
        vec![b"dgram-to-bound-1".to_vec(), b"dgram-to-bound-2".to_vec()]
    );

    // deleted path, relative path
    assert_eq!(u(18).deleted, Some(true));
    assert_eq!(u(19).name, b"rel.sock\0".to_vec());
    assert_eq!(u(19).name_dir.as_deref(), Some(sdir.to_str().unwrap()));
    assert_eq!(u(19).deleted, None);

    // options as CRIU records them for unix sockets
    let o = u(3).opts;
    assert!(o.so_passcred.is_some() && o.so_passsec.is_some() && o.so_buf_lock.is_some());
    assert!(o.so_sndbuf > 0 && o.so_rcvbuf > 0);
}

#[test]
fn queues_are_not_consumed_with_leave_running() {
    let kit = Kit::new();
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let prog = kit.start("usk", &[sdir.to_str().unwrap()]);
    let (d1, d2) = (kit.path("img1"), kit.path("img2"));
    ok(&kit.dump(prog.pid, &d1, &["-R"]));
    ok(&kit.dump(prog.pid, &d2, &["-R"]));
    let a = std::fs::read(d1.join("sk-queues.img")).unwrap();
    let b = std::fs::read(d2.join("sk-queues.img")).unwrap();
    assert_eq!(a, b, "a second dump sees the same queued data");
    kill_tree(prog.pid);
}

fn ext_setup(kit: &Kit, keep: &str) -> (i32, i32) {
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let prog = kit.start("usk_ext", &[sdir.to_str().unwrap(), keep]);
    let w: Vec<i32> = prog.ready_numbers();
    std::mem::forget(prog);
    (w[0], w[1])
}

#[test]
fn outside_peer_is_refused_and_the_tree_runs_on() {
    let kit = Kit::new();
    let (child, parent) = ext_setup(&kit, "stream");
    let ino = sock_ino(child, 20);
    let dir = kit.path("img");
    let o = kit.dump(child, &dir, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains(&format!("unix socket {ino}")), "{e}");
    assert!(e.contains(&format!("--ext-unix-sk={ino}")), "{e}");
    assert!(e.contains(&format!("held by pid {parent}")), "{e}");
    assert!(alive(child));
    let st = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    assert!(st.contains("TracerPid:\t0"), "detached after the refusal");
    assert!(
        images(&dir).iter().all(|n| !n.ends_with(".img")),
        "no images left: {:?}",
        images(&dir)
    );
    kill_tree(child);
    kill_tree(parent);
}

fn check_ext(
    kit: &Kit,
    keep: &str,
    fd: i32,
    ty: u32,
    opt: &dyn Fn(u32) -> Vec<String>,
    name: Option<&str>,
) {
    let (child, parent) = ext_setup(kit, keep);
    let ino = sock_ino(child, fd);
    let dir = kit.path(&format!("img-{keep}"));
    let args = opt(ino);
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok(&kit.dump(child, &dir, &a));
    roundtrip_all(kit, &dir);
    let me = usk_by_fd(&dir, 2, fd as u32);
    assert_eq!(me.r#type, ty);
    let ext = files(&dir)
        .into_iter()
        .filter_map(|f| f.usk)
        .find(|u| u.ino == me.peer)
        .expect("external entry");
    assert_eq!(ext.uflags & 1, 1, "USK_EXTERN");
    assert_eq!(
        (ext.peer, ext.r#type, ext.state, ext.flags),
        (0, 2, 10, 0),
        "as CRIU writes it"
    );
    assert!(ext.ns_id.is_none());
    if let Some(n) = name {
        assert_eq!(
            ext.name,
            format!("{}/{n}\0", kit.path("s").display()).into_bytes()
        );
    } else {
        assert!(ext.name.is_empty());
    }
    kill_tree(child);
    kill_tree(parent);
    reap_all();
}

#[test]
fn outside_peers_with_consent() {
    let kit = Kit::new();
    let bare = |_: u32| vec!["--ext-unix-sk".to_string()];
    let by_ino = |i: u32| vec![format!("--ext-unix-sk={i}")];
    let external = |i: u32| vec!["--external".to_string(), format!("unix[{i}]")];
    check_ext(&kit, "stream", 20, 1, &bare, None);
    check_ext(&kit, "dgram", 21, 2, &by_ino, Some("ext-dgram.sock"));
    check_ext(&kit, "conn", 22, 1, &external, Some("ext-srv.sock"));
    check_ext(&kit, "seqpacket", 23, 5, &by_ino, None);
}

/// Every socket with an outside peer is named in the one refusal, with its
/// type, its peer and the option that would dump them all.
#[test]
fn refusal_lists_every_outside_peer() {
    let kit = Kit::new();
    let (child, parent) = ext_setup(&kit, "all");
    let inos: Vec<u32> = (20..24).map(|fd| sock_ino(child, fd)).collect();
    let dir = kit.path("img");
    let o = kit.dump(child, &dir, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    for (ino, kind) in inos.iter().zip(["STREAM", "DGRAM", "STREAM", "SEQPACKET"]) {
        assert!(e.contains(&format!("{kind} unix socket {ino} ")), "{e}");
    }
    assert!(e.contains("ext-dgram.sock"), "the peer's address: {e}");
    let all: Vec<String> = inos.iter().map(|i| i.to_string()).collect();
    assert!(
        e.contains(&format!("--ext-unix-sk={}", all.join(","))),
        "{e}"
    );
    assert!(alive(child));
    kill_tree(child);
    kill_tree(parent);
}

#[test]
fn consent_for_another_socket_does_not_count() {
    let kit = Kit::new();
    let (child, parent) = ext_setup(&kit, "stream");
    let dir = kit.path("img");
    let o = kit.dump(child, &dir, &["--ext-unix-sk=1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--ext-unix-sk="));
    assert!(alive(child));
    kill_tree(child);
    kill_tree(parent);
}

/// The peer inode of socket `ino` (sock_diag), if any.
fn peer_of(ino: u32) -> Option<u32> {
    crit::sys::sockdiag::unix_sockets().ok()?.get(&ino)?.peer
}

#[test]
fn external_dgram_peer_reconnects_on_restore() {
    let kit = Kit::new();
    let (child, parent) = ext_setup(&kit, "dgram");
    let sdir = kit.path("s");
    let dir = kit.path("img");
    ok(&kit.dump(child, &dir, &["--ext-unix-sk"]));
    // The dump killed the child; reap it so its pid is free again.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    let o = kit.crit(&[
        "restore",
        "-d",
        "--shell-job",
        "--ext-unix-sk",
        "-D",
        dir.to_str().unwrap(),
    ]);
    ok(&o);
    assert!(alive(child), "restored with its pid");
    // The restored dgram socket (fd 21) is connected to the parent's
    // bound socket again, at the recorded address.
    let ino = sock_ino(child, 21);
    let bound = std::fs::read_dir(format!("/proc/{parent}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .find(|&i| {
            crit::sys::sockdiag::unix_sockets()
                .ok()
                .and_then(|m| m.get(&i).and_then(|d| d.name.clone()))
                .map(|n| n.starts_with(format!("{}/ext-dgram.sock", sdir.display()).as_bytes()))
                .unwrap_or(false)
        })
        .expect("the parent's bound dgram socket");
    assert_eq!(peer_of(ino), Some(bound));
    kill_tree(child);
    kill_tree(parent);
}

#[test]
fn external_stream_peer_reconnects_to_the_listener_on_restore() {
    let kit = Kit::new();
    let (child, parent) = ext_setup(&kit, "conn");
    let dir = kit.path("img");
    ok(&kit.dump(child, &dir, &["--ext-unix-sk"]));
    let o = kit.crit(&[
        "restore",
        "-d",
        "--shell-job",
        "--ext-unix-sk",
        "-D",
        dir.to_str().unwrap(),
    ]);
    ok(&o);
    assert!(alive(child), "restored with its pid");
    // The restored stream socket (fd 22) is connected again: it waits in
    // the parent's listener (bound at ext-srv.sock).
    let ino = sock_ino(child, 22);
    let m = crit::sys::sockdiag::unix_sockets().unwrap();
    let listener = m
        .values()
        .find(|d| {
            d.state == 10
                && d.name
                    .as_ref()
                    .map(|n| {
                        n.starts_with(
                            format!("{}/ext-srv.sock", kit.path("s").display()).as_bytes(),
                        )
                    })
                    .unwrap_or(false)
        })
        .expect("the parent's listener");
    assert!(
        listener.icons.contains(&ino),
        "restored connection pending in the listener"
    );
    kill_tree(child);
    kill_tree(parent);
}

/// tests/programs/usk.c started with its socket files in `<kit>/s`,
/// then dumped (and so ended) into `<kit>/img`: (socket dir, pid, images).
fn usk_dumped(kit: &Kit) -> (PathBuf, i32, PathBuf) {
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let mut prog = kit.start("usk", &[sdir.to_str().unwrap()]);
    let pid = prog.pid;
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    let _ = prog.child.wait();
    (sdir, pid, dir)
}

/// A live socket at a path the images bind, of another network
/// namespace (a host socket reached through a container's bind mount:
/// sock_diag from the restore's namespace does not show it), is a
/// refusal: its file stays and still serves, and nothing of the tree is
/// left.
#[test]
fn a_live_socket_of_another_network_namespace_is_not_taken_over() {
    let kit = Kit::new();
    let (sdir, pid, dir) = usk_dumped(&kit);
    let path = sdir.join("srv.sock");
    std::fs::remove_file(&path).unwrap();
    // unshare() in a thread of its own moves only that thread.
    let bind_at = path.clone();
    let theirs = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        std::os::unix::net::UnixListener::bind(bind_at).unwrap()
    })
    .join()
    .unwrap();
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = ino(&path);
    let o = kit::crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(&dir)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("is bound by a live socket of another process"),
        "{e}"
    );
    assert!(!alive(pid), "pid {pid} left by a failed restore");
    assert_eq!(ino(&path), before, "the other socket's file was replaced");
    std::os::unix::net::UnixStream::connect(&path).unwrap();
    drop(theirs);
}

/// `crit restore` killed with SIGKILL the moment its janitor ends (which
/// the test watches through a pidfd), or the moment crit lets the task go
/// (its TracerPid turns 0), before crit tells the janitor: the tree runs
/// on with its socket files, which the janitor leaves.
#[test]
fn a_restore_killed_as_it_lets_the_tree_go_leaves_it_whole() {
    use std::os::fd::AsFd;
    let kit = Kit::new();
    let (sdir, pid, dir) = usk_dumped(&kit);
    // At pre-resume, the last step before the tasks are let go.
    let hold = Hold::new(&kit, "pre-resume");
    // The moments are races (the janitor ends, crit lets go of a task a
    // few microseconds later or earlier): a few rounds of each.
    for round in 0..6 {
        let watch_janitor = round % 2 == 0;
        hold.reset();
        let mut c = spawn_crit(&[
            "restore",
            "-d",
            "--shell-job",
            "--action-script",
            hold.script.to_str().unwrap(),
            "-D",
            dir.to_str().unwrap(),
        ]);
        let crit_pid = c.id() as i32;
        assert!(hold.reached(), "no pre-resume");
        let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        let janitor = kit::proc::children(crit_pid)
            .into_iter()
            .find(|&p| comm(p).trim() == "crit")
            .and_then(|j| crit::sys::pidfd::pidfd_open(j).ok());
        hold.release();
        if !watch_janitor {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while kit::proc::traced(pid) && std::time::Instant::now() < end {}
        } else if let Some(fd) = janitor {
            let mut pfd = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut pfd, 20_000u16);
        }
        kill_tree(crit_pid);
        let _ = c.wait();
        let files = ["srv.sock", "dgram.sock", "rel.sock"].map(|n| sdir.join(n).exists());
        let running = alive(pid);
        kill_tree(pid);
        reap(&[pid], std::time::Duration::from_secs(5));
        let how = if watch_janitor {
            "janitor ends"
        } else {
            "task let go"
        };
        assert!(running, "round {round} ({how}): the restored tree runs");
        assert_eq!(
            files, [true; 3],
            "round {round} ({how}): its socket files stay"
        );
    }
}
