//! Per-task state beyond the fixtures' own checks, on edited copies of the
//! `counter` images: credentials (uids, gids, groups, capabilities) are set
//! last, and signals pending at dump time are delivered after restore.

mod kit;
use kit::restore::*;
use std::time::{Duration, Instant};

fn status_line(pid: i32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .map(|l| {
            l[key.len()..]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[test]
fn credentials_are_restored() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = copy_images("counter");
    edit_json(&d.path().join("core-26659.img"), |v| {
        let c = &mut v["entries"][0]["thread_core"]["creds"];
        for (k, val) in [
            ("uid", 1000),
            ("euid", 1001),
            ("suid", 1002),
            ("fsuid", 1001),
        ] {
            c[k] = serde_json::json!(val);
        }
        for (k, val) in [
            ("gid", 2000),
            ("egid", 2001),
            ("sgid", 2002),
            ("fsgid", 2001),
        ] {
            c[k] = serde_json::json!(val);
        }
        c["groups"] = serde_json::json!([3000, 3001]);
        // CAP_NET_BIND_SERVICE (10) and CAP_KILL (5) only.
        c["cap_eff"] = serde_json::json!([(1u32 << 10) | (1 << 5), 0]);
        c["cap_prm"] = serde_json::json!([(1u32 << 10) | (1 << 5), 0]);
        c["cap_inh"] = serde_json::json!([0, 0]);
    });
    let out = restore_dir(d.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    std::thread::sleep(Duration::from_millis(200));
    let got = [
        status_line(26659, "Uid:"),
        status_line(26659, "Gid:"),
        status_line(26659, "Groups:"),
        status_line(26659, "CapEff:"),
        status_line(26659, "CapPrm:"),
        status_line(26659, "State:"),
    ];
    cleanup("counter");
    assert!(out.status.success(), "{stderr}");
    assert_eq!(got[0], "1000 1001 1002 1001");
    assert_eq!(got[1], "2000 2001 2002 2001");
    assert_eq!(got[2], "3000 3001");
    assert_eq!(got[3], "0000000000000420");
    assert_eq!(got[4], "0000000000000420");
    assert!(
        got[5].starts_with('S') || got[5].starts_with('R'),
        "{got:?}"
    );
}

#[test]
fn pending_signal_is_delivered_after_restore() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = copy_images("counter");
    // A SIGUSR1 (10) sent by pid 1 was pending in the thread's own queue.
    let mut info = [0u8; 128];
    info[0] = 10;
    info[16] = 1;
    let b64 = {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in info.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..4 {
                if k <= c.len() {
                    s.push(T[((n >> (18 - 6 * k)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    };
    edit_json(&d.path().join("core-26659.img"), |v| {
        v["entries"][0]["thread_core"]["signals_p"] =
            serde_json::json!({"signals": [{"siginfo": b64}]});
    });
    let _ = std::fs::remove_file("/tmp/scen/result/counter.main");
    let out = restore_dir(d.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // No signal sent by us: the pending one makes the program check itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answer = String::new();
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string("/tmp/scen/result/counter.main") {
            if !s.is_empty() {
                answer = s;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cleanup("counter");
    assert!(out.status.success(), "{stderr}");
    assert!(answer.starts_with("OK"), "answer {answer:?}; {stderr}");
}

#[test]
fn stopped_task_comes_back_stopped() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = copy_images("counter");
    edit_json(&d.path().join("core-26659.img"), |v| {
        v["entries"][0]["tc"]["task_state"] = serde_json::json!(3);
        v["entries"][0]["tc"]["stop_signo"] = serde_json::json!(19);
    });
    let out = restore_dir(d.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut state = String::new();
    while Instant::now() < deadline {
        state = status_line(26659, "State:");
        if state.starts_with('T') {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(26659),
        nix::sys::signal::Signal::SIGCONT,
    );
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    assert!(out.status.success(), "{stderr}");
    assert!(state.starts_with('T'), "state {state}");
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

#[test]
fn zombie_comes_back_with_its_exit_status() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_tree") {
        return;
    }
    let d = copy_images("usk_tree");
    // The child (26706) had exited with status 7 and was not yet reaped.
    edit_json(&d.path().join("core-26706.img"), |v| {
        // TASK_DEAD, as CRIU 4.2 and crit dump write a zombie.
        v["entries"][0]["tc"]["task_state"] = serde_json::json!(2);
        v["entries"][0]["tc"]["exit_code"] = serde_json::json!(7 << 8);
    });
    let out = restore_dir(d.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    std::thread::sleep(Duration::from_millis(200));
    let state = status_line(26706, "State:");
    let ppid = status_line(26706, "PPid:");
    // Its parent goes; the zombie comes to us (subreaper) and we reap it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(26703),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(26703), None);
    let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(26706), None);
    cleanup("usk_tree");
    assert!(out.status.success(), "{stderr}");
    assert!(state.starts_with('Z'), "state {state}");
    assert_eq!(ppid, "26703");
    assert!(
        matches!(st, Ok(nix::sys::wait::WaitStatus::Exited(_, 7))),
        "{st:?}"
    );
}

#[test]
fn nice_and_oom_score_adj_are_restored() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = copy_images("counter");
    edit_json(&d.path().join("core-26659.img"), |v| {
        v["entries"][0]["thread_core"]["sched_nice"] = serde_json::json!(7);
        v["entries"][0]["tc"]["oom_score_adj"] = serde_json::json!(321);
    });
    let out = restore_dir(d.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stat = std::fs::read_to_string("/proc/26659/stat").unwrap_or_default();
    let nice = stat
        .rsplit_once(") ")
        .map(|x| x.1)
        .unwrap_or("")
        .split(' ')
        .nth(16)
        .unwrap_or("")
        .to_string();
    let oom = std::fs::read_to_string("/proc/26659/oom_score_adj").unwrap_or_default();
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    assert!(out.status.success(), "{stderr}");
    assert_eq!(nice, "7");
    assert_eq!(oom.trim(), "321");
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// Shared anonymous memory recorded by shmid (as CRIU does when it cannot
/// use a memfd) is one object shared by the tasks that map it, with its
/// contents: kitchen's shared mapping, rewritten that way, still works
/// between parent and child.
#[test]
fn anon_shared_memory_by_shmid() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("kitchen") {
        return;
    }
    let d = copy_images("kitchen");
    for mm in ["mm-26773.img", "mm-26777.img"] {
        edit_json(&d.path().join(mm), |v| {
            for vma in v["entries"][0]["vmas"].as_array_mut().unwrap() {
                if vma["status"].as_u64() == Some(16513) {
                    vma["status"] = serde_json::json!(1 | (1 << 8));
                    vma["flags"] = serde_json::json!(0x21);
                    vma["shmid"] = serde_json::json!(2460);
                }
            }
        });
    }
    let out = restore_dir(d.path(), &["--tcp-established"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let maps = std::fs::read_to_string("/proc/26773/maps").unwrap_or_default();
    let answers = if out.status.success() {
        check("kitchen")
    } else {
        vec![]
    };
    cleanup("kitchen");
    assert!(out.status.success(), "{stderr}");
    assert!(maps.contains("rw-s"), "{maps}");
    for a in &answers {
        assert!(a.starts_with("OK"), "{answers:?}");
    }
}

/// kitchen's images with its timerfd entry changed by `set`, restored:
/// what `check` makes of the restored timerfd (fd 11 of the parent) and
/// of its first read's count; None where the fixture cannot run.
fn kitchen_timerfd<T>(
    set: &[(&str, u64)],
    check: impl FnOnce(&std::fs::File, Option<u64>) -> T,
) -> Option<T> {
    use std::io::Read;
    let _g = lock();
    if !prepare_fixtures() || !require_free("kitchen") {
        return None;
    }
    let d = copy_images("kitchen");
    edit_json(&d.path().join("files.img"), |v| {
        for e in v["entries"].as_array_mut().unwrap() {
            if e["tfd"].is_object() {
                for &(k, n) in set {
                    e["tfd"][k] = serde_json::json!(n);
                }
            }
        }
    });
    let out = restore_dir(d.path(), &["--tcp-established"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let got = crit::sys::pidfd::getfd(26773, 11).map(|fd| {
        let mut f = std::fs::File::from(fd);
        let mut b = [0u8; 8];
        let first = f.read_exact(&mut b).map(|_| u64::from_ne_bytes(b)).ok();
        check(&f, first)
    });
    cleanup("kitchen");
    assert!(out.status.success(), "{stderr}");
    Some(got.unwrap_or_else(|e| panic!("fd 11 of 26773: {e}")))
}

#[test]
fn timerfd_pending_expirations_are_restored() {
    if let Some(first) = kitchen_timerfd(&[("ticks", 3)], |_, first| first) {
        assert!(matches!(first, Some(n) if n >= 3), "{first:?}");
    }
}

/// A periodic timerfd that expired with nobody reading it has no time
/// left in its image (fdinfo shows 0 until a read rearms it): it comes
/// back running, its pending expiration kept, and fires again within a
/// second.
#[test]
fn an_expired_periodic_timerfd_runs_on() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let expired = [
        ("vsec", 0),
        ("vnsec", 0),
        ("isec", 0),
        ("insec", 10_000_000),
        ("ticks", 1),
    ];
    let got = kitchen_timerfd(&expired, |f, first| {
        let mut p = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        (first, poll(&mut p, PollTimeout::from(1000u16)).ok())
    });
    if let Some(got) = got {
        assert!(matches!(got, (Some(n), Some(1)) if n >= 1), "{got:?}");
    }
}

/// An outside peer is reached with the task's own supplementary groups,
/// not crit's: a socket file open to group 0 only is refused to a task of
/// uid 1000 without group 0 (crit, as root, has it), and reached by the
/// same task once its image lists group 0.
#[test]
fn outside_peer_is_reached_with_the_tasks_groups() {
    use std::os::unix::fs::PermissionsExt;
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_ext_dgram") {
        return;
    }
    let dir = "/tmp/scen/sock/group0";
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{dir}/peer.sock");
    let _ = std::fs::remove_file(&path);
    let _peer = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    let mut results = Vec::new();
    for groups in [vec![], vec![0]] {
        let d = copy_images("usk_ext_dgram");
        edit_json(&d.path().join("core-26841.img"), |v| {
            let c = &mut v["entries"][0]["thread_core"]["creds"];
            for k in [
                "uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid",
            ] {
                c[k] = serde_json::json!(1000);
            }
            c["groups"] = serde_json::json!(groups);
        });
        let out = restore_dir(d.path(), &[&format!("--ext-unix-sk=306782={path}")]);
        cleanup("usk_ext_dgram");
        results.push((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let (ok, err) = &results[0];
    assert!(!ok, "groups [] reached a group-0 socket: {err}");
    assert!(
        err.contains("306782") && err.contains("Permission denied"),
        "{err}"
    );
    let (ok, err) = &results[1];
    assert!(ok, "groups [0]: {err}");
}

/// A queued message that carries files (SCM_RIGHTS, as CRIU records them
/// in sk-queues.img) comes back with them: usk_pair's first queued message
/// edited to pass the task's fd 0 (/dev/null) arrives with a descriptor of
/// /dev/null attached, and the program's own check still answers OK.
#[test]
fn queued_message_keeps_the_files_it_passes() {
    use std::os::fd::AsRawFd;
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_pair") {
        return;
    }
    let d = copy_images("usk_pair");
    let fdinfo = crit()
        .args(["decode", "-i"])
        .arg(d.path().join("fdinfo-2.img"))
        .output()
        .unwrap();
    let fdinfo: serde_json::Value = serde_json::from_slice(&fdinfo.stdout).unwrap();
    let fd_of_id = |id: u64| -> i32 {
        fdinfo["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["fd"].as_i64().unwrap() as i32)
            .unwrap()
    };
    let null_id = fdinfo["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fd"] == 0)
        .map(|e| e["id"].as_u64().unwrap())
        .unwrap();
    let mut queue_owner = 0u64;
    edit_json(&d.path().join("sk-queues.img"), |v| {
        let first = &mut v["entries"][0];
        queue_owner = first["id_for"].as_u64().unwrap();
        first["scm"] = serde_json::json!([{"type": 1, "rights": [null_id]}]);
    });
    let out = restore_dir(d.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let pid = 26681;
    let mut passed = None;
    if out.status.success() {
        let sock = crit::sys::pidfd::getfd(pid, fd_of_id(queue_owner)).unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = nix::sys::socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .unwrap();
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                passed = Some(
                    fds.iter()
                        .map(|f| {
                            let p = std::fs::read_link(format!("/proc/self/fd/{f}")).unwrap();
                            let _ = nix::unistd::close(*f);
                            p.display().to_string()
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    let answers = if out.status.success() {
        check("usk_pair")
    } else {
        Vec::new()
    };
    cleanup("usk_pair");
    assert!(out.status.success(), "{stderr}");
    assert_eq!(passed, Some(vec!["/dev/null".to_string()]), "{stderr}");
    for a in &answers {
        assert!(a.starts_with("OK"), "{answers:?}");
    }
}

/// A queued message passing a file that is open nowhere is refused with
/// the socket and the file id, and nothing is left running.
#[test]
fn queued_message_passing_an_unknown_file_is_refused() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("usk_pair") {
        return;
    }
    let d = copy_images("usk_pair");
    edit_json(&d.path().join("sk-queues.img"), |v| {
        v["entries"][0]["scm"] = serde_json::json!([{"type": 1, "rights": [9999]}]);
    });
    let out = restore_dir(d.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let left = pids("usk_pair")
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    cleanup("usk_pair");
    assert!(!out.status.success());
    assert!(
        stderr.contains("file id 9999") && stderr.contains("SCM_RIGHTS"),
        "{stderr}"
    );
    assert!(!left, "a task was left running");
}
