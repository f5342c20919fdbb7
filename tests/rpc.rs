//! CRIU's RPC protocol, spoken to `crit swrk FD` by a client written from
//! rpc.proto (crit's own generated types), as runc and podman speak it:
//! VERSION, FEATURE_CHECK, a refused option named in the answer, DUMP and
//! RESTORE of a real task (with notify scripts answered), the restored
//! task checking itself; PRE_DUMP then a DUMP on top of it (`parent_img`),
//! as `runc checkpoint --pre-dump` and `--parent-path` ask.

mod kit;
use kit::host::ShmSegment;

use crit::image::rpc_pb::{CriuOpts, CriuReq, CriuReqType, CriuResp};
use kit::dump::*;
use prost::Message;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// A `crit swrk` child and our end of its socket.
struct Service {
    child: std::process::Child,
    client: Client,
}

/// Our end of a connection to the service.
struct Client {
    sock: OwnedFd,
}

impl std::ops::Deref for Service {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Service {
    fn start() -> Service {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let raw = theirs.as_raw_fd();
        let mut cmd = kit::crit();
        cmd.args(["swrk", "3"]);
        // SAFETY: dup2 and fcntl are async-signal-safe; they put the
        // service's end at fd 3 (without close-on-exec) in the child only.
        unsafe {
            cmd.pre_exec(move || {
                // At 3 already, dup2 would keep close-on-exec.
                let r = if raw == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(raw, 3)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(theirs);
        Service {
            child,
            client: Client { sock: ours },
        }
    }
}

impl Client {
    fn send(&self, req: &CriuReq) {
        nix::sys::socket::send(
            self.sock.as_raw_fd(),
            &req.encode_to_vec(),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
    }

    fn recv(&self) -> CriuResp {
        let mut buf = vec![0u8; 1 << 16];
        let n = nix::sys::socket::recv(
            self.sock.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        assert!(n > 0, "the service closed the socket");
        CriuResp::decode(&buf[..n]).unwrap()
    }

    /// Sends `req` and answers notifications until the final response;
    /// returns it and the scripts notified.
    fn call(&self, req: &CriuReq) -> (CriuResp, Vec<(String, i32)>) {
        self.call_refusing(req, "")
    }

    /// The same, saying no to the notification `refused`.
    fn call_refusing(&self, req: &CriuReq, refused: &str) -> (CriuResp, Vec<(String, i32)>) {
        self.send(req);
        let mut scripts = Vec::new();
        loop {
            let r = self.recv();
            if r.r#type != CriuReqType::Notify as i32 {
                return (r, scripts);
            }
            let n = r.notify.unwrap();
            let script = n.script.unwrap_or_default();
            let go = script != refused;
            scripts.push((script, n.pid.unwrap_or(0)));
            self.send(&CriuReq {
                r#type: CriuReqType::Notify as i32,
                notify_success: Some(go),
                ..Default::default()
            });
        }
    }
}

fn req(t: CriuReqType, opts: Option<CriuOpts>) -> CriuReq {
    CriuReq {
        r#type: t as i32,
        opts,
        keep_open: Some(true),
        ..Default::default()
    }
}

/// Has the restored task `pid` check itself (SIGUSR1); its answer, from
/// `result`.
fn ask(pid: i32, result: &std::path::Path) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = std::fs::read_to_string(result) {
            if !s.is_empty() {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "no answer");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dump_and_restore_through_the_protocol() {
    let kit = Kit::new();
    let svc = Service::start();
    let (v, _) = svc.call(&req(CriuReqType::Version, None));
    let v = v.version.expect("a version");
    assert_eq!((v.major_number, v.minor_number), (4, 2));
    let (f, _) = svc.call(&req(CriuReqType::FeatureCheck, None));
    assert!(f.success && f.features.is_some());

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
    let img = kit.path("img");
    std::fs::create_dir(&img).unwrap();
    // The service reaches it as /proc/OUR_PID/fd/N.
    let dir = std::fs::File::open(&img).unwrap();
    let opts = |extra: CriuOpts| CriuOpts {
        images_dir_fd: dir.as_raw_fd(),
        ..extra
    };
    // An option crit does not honour is refused by name, and nothing is
    // dumped.
    let (r, _) = svc.call(&req(
        CriuReqType::Dump,
        Some(opts(CriuOpts {
            pid: Some(prog.pid),
            auto_dedup: Some(true),
            ..Default::default()
        })),
    ));
    assert!(!r.success);
    assert!(r.cr_errmsg.unwrap_or_default().contains("auto_dedup"));
    assert!(alive(prog.pid));
    // A client that says no at post-dump (every image written, the task
    // still frozen) stops the dump: the task runs on.
    let (r, scripts) = svc.call_refusing(
        &req(
            CriuReqType::Dump,
            Some(opts(CriuOpts {
                pid: Some(prog.pid),
                notify_scripts: Some(true),
                ..Default::default()
            })),
        ),
        "post-dump",
    );
    assert!(!r.success);
    assert!(
        r.cr_errmsg.unwrap_or_default().contains("post-dump"),
        "the refusal is named"
    );
    assert_eq!(scripts.len(), 2, "{scripts:?}");
    assert!(alive(prog.pid), "the task runs on");
    assert!(!img.join("inventory.img").exists(), "no images are left");

    let (r, scripts) = svc.call(&req(
        CriuReqType::Dump,
        Some(opts(CriuOpts {
            pid: Some(prog.pid),
            notify_scripts: Some(true),
            log_level: Some(4),
            ..Default::default()
        })),
    ));
    assert!(r.success, "dump: {:?}", r.cr_errmsg);
    assert_eq!(
        scripts.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["pre-dump", "post-dump"]
    );
    assert!(img.join("dump.log").exists(), "the log is in the work dir");
    // Reaped by pid: the service is a child of this process too.
    let _ = prog.child.wait();
    assert!(!alive(prog.pid));

    // An engine killed (here at pre-restore) is named as such, not by
    // the last line it wrote; nothing of the tree is made.
    svc.send(&req(
        CriuReqType::Restore,
        Some(opts(CriuOpts {
            notify_scripts: Some(true),
            ..Default::default()
        })),
    ));
    let n = svc.recv();
    assert_eq!(n.r#type, CriuReqType::Notify as i32);
    let svc_pid = svc.child.id() as i32;
    let engines = kit::proc::children(svc_pid);
    assert_eq!(engines.len(), 1, "{engines:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engines[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    svc.send(&CriuReq {
        r#type: CriuReqType::Notify as i32,
        notify_success: Some(true),
        ..Default::default()
    });
    let r = svc.recv();
    assert!(!r.success);
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(
        msg.contains(&format!("(pid {}) was killed by SIGKILL", engines[0])),
        "{msg}"
    );
    assert!(!alive(prog.pid));

    let mut last = req(
        CriuReqType::Restore,
        Some(opts(CriuOpts {
            notify_scripts: Some(true),
            ..Default::default()
        })),
    );
    last.keep_open = None;
    let (r, scripts) = svc.call(&last);
    assert!(r.success, "restore: {:?}", r.cr_errmsg);
    let pid = r.restore.unwrap().pid;
    assert_eq!(pid, prog.pid, "pids come back");
    // CRIU's order, the root's pid with post-restore (runc learns it
    // there), while the task is still stopped.
    assert_eq!(
        scripts,
        [
            ("pre-restore".to_string(), 0),
            ("post-restore".to_string(), pid),
            ("pre-resume".to_string(), 0),
            ("post-resume".to_string(), 0)
        ]
    );
    let answer = ask(pid, &result);
    kill_tree(pid);
    let mut child = svc.child;
    let st = child.wait().unwrap();
    assert!(
        st.success(),
        "swrk ends once a request without keep_open is done"
    );
    reap_all();
    assert_eq!(answer.trim(), "OK");
}

#[test]
fn pre_dump_then_dump_through_the_protocol() {
    let kit = Kit::new();
    let svc = Service::start();
    let (f, _) = svc.call(&req(CriuReqType::FeatureCheck, None));
    assert_eq!(f.features.and_then(|f| f.mem_track), Some(true));
    let result = kit.path("result");
    let mut prog = kit.start("gens", &["32", "4", "5000", result.to_str().unwrap()]);
    let (pre, img) = (kit.path("pre"), kit.path("img"));
    std::fs::create_dir(&pre).unwrap();
    std::fs::create_dir(&img).unwrap();
    let (pre_fd, img_fd) = (
        std::fs::File::open(&pre).unwrap(),
        std::fs::File::open(&img).unwrap(),
    );
    let (r, _) = svc.call(&req(
        CriuReqType::PreDump,
        Some(CriuOpts {
            images_dir_fd: pre_fd.as_raw_fd(),
            pid: Some(prog.pid),
            track_mem: Some(true),
            ..Default::default()
        }),
    ));
    assert!(r.success, "pre-dump: {:?}", r.cr_errmsg);
    assert!(alive(prog.pid) && pre.join("inventory.img").exists());
    std::thread::sleep(Duration::from_millis(100));
    let (r, _) = svc.call(&req(
        CriuReqType::Dump,
        Some(CriuOpts {
            images_dir_fd: img_fd.as_raw_fd(),
            pid: Some(prog.pid),
            parent_img: Some("../pre".into()),
            shell_job: Some(true),
            ..Default::default()
        }),
    ));
    assert!(r.success, "dump: {:?}", r.cr_errmsg);
    let st: crit::image::pb::StatsEntry =
        crit::image::typed::read_one(&img.join("stats-dump"), "STATS").unwrap();
    let st = st.dump.unwrap();
    assert!(
        st.pages_skipped_parent > 6000 && st.pages_written < 4000,
        "{st:?}"
    );
    let _ = prog.child.wait();
    let mut last = req(
        CriuReqType::Restore,
        Some(CriuOpts {
            images_dir_fd: img_fd.as_raw_fd(),
            shell_job: Some(true),
            ..Default::default()
        }),
    );
    last.keep_open = None;
    let (r, _) = svc.call(&last);
    assert!(r.success, "restore: {:?}", r.cr_errmsg);
    let pid = r.restore.unwrap().pid;
    let answer = ask(pid, &result);
    kill_tree(pid);
    let mut child = svc.child;
    let _ = child.wait();
    reap_all();
    assert!(answer.starts_with("OK 8192 "), "{answer}");
}

/// `crit service --address PATH` (CRIU's service mode): every client that
/// connects gets a worker of its own; the peer is the connecting client.
/// A client of another user than root and the service's is refused.
#[test]
fn service_mode_serves_each_connection() {
    let kit = Kit::new();
    let sock = kit.path("svc.sock");
    let pidfile = kit.path("svc.pid");
    let mut svc = kit::crit()
        .args(["service", "--address"])
        .arg(&sock)
        .arg("--pidfile")
        .arg(&pidfile)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "the service does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect = || {
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let s = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(s.as_raw_fd(), &UnixAddr::new(&sock).unwrap()).unwrap();
        s
    };
    let mut answers = Vec::new();
    // Two clients at once, then a third after them.
    let (a, b) = (Client { sock: connect() }, Client { sock: connect() });
    for c in [&a, &b] {
        let (v, _) = c.call(&req(CriuReqType::Version, None));
        answers.push(v.version.map(|v| (v.major_number, v.minor_number)));
    }
    let c = Client { sock: connect() };
    let (r, _) = c.call(&req(
        CriuReqType::Dump,
        Some(CriuOpts {
            images_dir_fd: -1,
            images_dir: Some(kit.path("none").display().to_string()),
            auto_dedup: Some(true),
            ..Default::default()
        }),
    ));
    // A client of another user is refused, whatever it asks.
    std::fs::set_permissions(
        kit.tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let hex: String = req(CriuReqType::Version, None)
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\n\
        s.connect(sys.argv[1]); s.send(bytes.fromhex(sys.argv[2]))\n\
        print(s.recv(65536).hex())";
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&sock)
        .arg(&hex)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let bytes: Vec<u8> = (0..got.len() / 2)
        .map(|i| u8::from_str_radix(&got[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let refused = CriuResp::decode(&bytes[..]).unwrap();
    let _ = svc.kill();
    let _ = svc.wait();
    assert!(!refused.success, "{refused:?}");
    assert_eq!(refused.cr_errno, Some(libc::EPERM));
    assert!(refused
        .cr_errmsg
        .unwrap_or_default()
        .contains("runs as uid 65534"),);
    assert_eq!(answers, [Some((4, 2)), Some((4, 2))]);
    assert!(!r.success);
    assert!(r.cr_errmsg.unwrap_or_default().contains("auto_dedup"));
    let mode = std::fs::metadata(&sock).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o666
    );
}

/// `crit service -d --pidfile F`: once the command returns, F names the
/// service, which listens; one that cannot start (an address in a
/// directory that does not exist, a pidfile it cannot write) says why
/// in one line with exit status 1.
#[test]
fn a_daemon_service_is_ready_when_the_command_returns_or_says_why_not() {
    let kit = Kit::new();
    let svc = |sock: &std::path::Path| {
        let mut c = kit::crit();
        c.args(["service", "--address"]).arg(sock);
        c
    };
    let sock = kit.path("svc.sock");
    let pid = kit::proc::daemon_started(svc(&sock), &kit.path("a.pid"));
    let listens = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .and_then(|s| {
        nix::sys::socket::connect(
            s.as_raw_fd(),
            &nix::sys::socket::UnixAddr::new(&sock).unwrap(),
        )
    });
    kit::proc::kill_and_reap(&[pid]);
    // The worker it started for that connection comes to us.
    reap_all();
    assert!(listens.is_ok(), "{listens:?}");

    let e = kit::proc::daemon_refused(svc(&kit.path("none/svc.sock")), &kit.path("b.pid"));
    assert!(e.contains("none/svc.sock: bind"), "{e}");
    assert!(!kit.path("b.pid").exists());
    let e = kit::proc::daemon_refused(svc(&kit.path("c.sock")), &kit.path("none/c.pid"));
    assert!(e.contains("none/c.pid: writing the pidfile"), "{e}");
    // Nobody would answer there (found by a hostile probe: it was left).
    assert!(!kit.path("c.sock").exists(), "the socket file is left");
    let mut c = svc(&kit.path("e.sock"));
    c.arg("-o").arg(kit.path("none/log"));
    let e = kit::proc::daemon_refused(c, &kit.path("e.pid"));
    assert!(e.contains("none/log: opening the log file"), "{e}");
    assert!(!kit.path("e.sock").exists() && !kit.path("e.pid").exists());
}
