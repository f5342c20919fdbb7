//! Restores the CRIU 4.2 fixtures that need no outside peer, and has each
//! restored program check its own state (memory, queues, peers, threads,
//! handlers) and answer OK. Needs root and the fixtures' pids free.

mod kit;
use kit::restore::*;

#[test]
fn counter() {
    restore_and_check("counter", &[]);
}

#[test]
fn usk_pair() {
    restore_and_check("usk_pair", &[]);
}

#[test]
fn usk_tree() {
    restore_and_check("usk_tree", &[]);
}

#[test]
fn usk_deleted() {
    restore_and_check("usk_deleted", &[]);
}

#[test]
fn usk_server() {
    restore_and_check("usk_server", &[]);
}

#[test]
fn kitchen() {
    restore_and_check("kitchen", &["--tcp-established"]);
}

#[test]
fn usk_ext_dgram_reconnects_to_the_recorded_address() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_ext_dgram") {
        return;
    }
    let _ = std::fs::remove_file("/tmp/scen/sock/extdg.sock");
    let peer = std::os::unix::net::UnixDatagram::bind("/tmp/scen/sock/extdg.sock").unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let out = restore_detached("usk_ext_dgram", &["--ext-unix-sk"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        cleanup("usk_ext_dgram");
        panic!("restore failed: {stderr}");
    }
    let answers = check("usk_ext_dgram");
    let mut buf = [0u8; 256];
    let got = peer.recv(&mut buf);
    cleanup("usk_ext_dgram");
    let _ = std::fs::remove_file("/tmp/scen/sock/extdg.sock");
    assert!(answers[0].starts_with("OK"), "{answers:?} {stderr}");
    assert!(got.is_ok(), "the outside peer got nothing");
}

#[test]
fn usk_ext_dgram_reconnects_to_a_new_path() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_ext_dgram") {
        return;
    }
    let path = "/tmp/scen/sock/elsewhere.sock";
    let _ = std::fs::remove_file(path);
    let peer = std::os::unix::net::UnixDatagram::bind(path).unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let out = restore_detached("usk_ext_dgram", &[&format!("--ext-unix-sk=306782={path}")]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        cleanup("usk_ext_dgram");
        panic!("restore failed: {stderr}");
    }
    let answers = check("usk_ext_dgram");
    let mut buf = [0u8; 256];
    let got = peer.recv(&mut buf);
    cleanup("usk_ext_dgram");
    let _ = std::fs::remove_file(path);
    assert!(answers[0].starts_with("OK"), "{answers:?} {stderr}");
    assert!(got.is_ok(), "the new peer got nothing");
}

/// The socket handed in with `--inherit-fd` takes the place of the image's
/// socket (fd 4 of the task, same inode), and the bytes the outside end had
/// sent are reported as not redelivered. (The fixture program's own check
/// sends on a hard-coded fd 3, while its image has the socket at fd 4; so
/// that check cannot pass for any restore that puts fds where they were.)
#[test]
fn usk_inherit_takes_the_socket_handed_in() {
    use std::os::fd::AsRawFd;
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_inherit") {
        return;
    }
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::empty(),
    )
    .unwrap();
    let n = theirs.as_raw_fd();
    let want_ino = std::fs::metadata(format!("/proc/self/fd/{n}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let out = restore_detached(
        "usk_inherit",
        &[&format!("--inherit-fd=fd[{n}]:socket:[306950]")],
    );
    drop(theirs);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        cleanup("usk_inherit");
        panic!("restore failed: {stderr}");
    }
    let got_ino =
        std::fs::metadata("/proc/26901/fd/4").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let link = std::fs::read_link("/proc/26901/fd/4");
    cleanup("usk_inherit");
    drop(ours);
    assert!(
        stderr.contains("306950") && stderr.contains("18 bytes"),
        "{stderr}"
    );
    assert_eq!(got_ino.ok(), Some(want_ino), "fd 4 is {link:?}");
}

#[test]
fn pidfile_and_log_file() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("pid");
    let logfile = d.path().join("log");
    let out = restore_detached(
        "counter",
        &[
            "--pidfile",
            pidfile.to_str().unwrap(),
            "-o",
            logfile.to_str().unwrap(),
            "-v",
        ],
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let log = std::fs::read_to_string(&logfile).unwrap_or_default();
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pid.trim(), "26659");
    assert!(log.contains("restored 1 task(s), root pid 26659"), "{log}");
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// `--inherit-fd fd[N]:pipe:[INO]`: counter's fd 251 (the write end of a
/// pipe whose reader was outside the dump) becomes the pipe handed in.
#[test]
fn inherit_fd_pipe() {
    use std::os::fd::AsRawFd;
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let (r, w) = nix::unistd::pipe().unwrap();
    let n = w.as_raw_fd();
    let want = std::fs::metadata(format!("/proc/self/fd/{n}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let out = restore_detached("counter", &[&format!("--inherit-fd=fd[{n}]:pipe:[305921]")]);
    drop(w);
    let got =
        std::fs::metadata("/proc/26659/fd/251").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    drop(r);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got.ok(), Some(want));
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// `--inherit-fd fd[N]:PATH`: the files of the images opened at PATH
/// (counter's /dev/null, fds 0, 1, 2 and 10) become the file handed in.
#[test]
fn inherit_fd_path() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(d.path().join("instead")).unwrap();
    // Not close-on-exec, so that crit inherits it.
    let n = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD(100)).unwrap();
    let out = restore_detached("counter", &[&format!("--inherit-fd=fd[{n}]:/dev/null")]);
    let _ = nix::unistd::close(n);
    let links: Vec<String> = [0, 1, 2, 10]
        .iter()
        .map(|k| {
            std::fs::read_link(format!("/proc/26659/fd/{k}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    drop(f);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in &links {
        assert!(l.ends_with("/instead"), "{links:?}");
    }
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// A pair both of whose ends one task holds is made by that task itself:
/// SO_PEERCRED names the task, not crit.
#[test]
fn same_task_pair_peer_credentials_name_the_task() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_pair") {
        return;
    }
    let out = restore_detached("usk_pair", &[]);
    let cred = crit::sys::pidfd::getfd(26681, 3).map(|fd| {
        nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.pid())
    });
    let answers = if out.status.success() {
        check("usk_pair")
    } else {
        vec![]
    };
    cleanup("usk_pair");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(cred, Ok(Ok(26681))), "{cred:?}");
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// A pair across two tasks is made by their common ancestor (here the
/// parent, which holds one end) before it forks: SO_PEERCRED names it.
#[test]
fn cross_task_pair_is_made_by_the_common_ancestor() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_tree") {
        return;
    }
    let out = restore_detached("usk_tree", &[]);
    let cred = |pid: i32, fd: i32| {
        crit::sys::pidfd::getfd(pid, fd).map(|f| {
            nix::sys::socket::getsockopt(&f, nix::sys::socket::sockopt::PeerCredentials)
                .map(|c| c.pid())
        })
    };
    let (parent, child) = (cred(26703, 3), cred(26706, 4));
    let answers = if out.status.success() {
        check("usk_tree")
    } else {
        vec![]
    };
    cleanup("usk_tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(parent, Ok(Ok(26703))), "{parent:?}");
    assert!(matches!(child, Ok(Ok(26703))), "{child:?}");
    for a in &answers {
        assert!(a.starts_with("OK"), "{answers:?}");
    }
}

/// The restores here use the fixtures' own C library where this machine
/// has another one (a mount namespace with it bound over the system's,
/// see kit::restore::fixture_crit). That path, taken even where the
/// libraries are the same: the restored task maps the bound copies.
#[test]
fn counter_with_the_fixtures_libc_bound_over_the_systems() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let out = fixture_crit_with(true)
        .args(["restore", "-d", "-D"])
        .arg(images("counter"))
        .output()
        .unwrap();
    let maps = std::fs::read_to_string("/proc/26659/maps").unwrap_or_default();
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(answers[0].starts_with("OK"), "{answers:?}");
    let copy = testdata().join("criu-4.2-bin/lib/libc.so.6");
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&copy).unwrap());
    let libc: Vec<&str> = maps.lines().filter(|l| l.ends_with("/libc.so.6")).collect();
    assert!(!libc.is_empty(), "{maps}");
    for l in libc {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f[4], ino.to_string(), "not the bound copy: {l}");
    }
}
