//! Established TCP connections through `crit dump --tcp-established` and
//! `crit restore`, with real processes that check their own state:
//!
//! * two tasks of the tree connected over 127.0.0.1 and over ::1, with
//!   megabytes queued one way (most of it in the sender's send queue) and
//!   data the other way: after the restore each reads the rest, in order,
//!   and the connection carries new data;
//! * a task connected to a peer outside the tree (this test), with data
//!   queued both ways and more sent by the peer while the task is gone:
//!   the peer never sees a reset or a gap, and the conversation goes on;
//! * `-R`: the connection goes on, unlocked; a failed dump lets it go
//!   on too; a connection in flight (not accepted) is refused, or left
//!   out with `--skip-in-flight`;
//! * the network lock: CRIU's iptables rules (or with `--network-lock
//!   nftables` its table) while the tree is dumped and gone, also after
//!   a restore that failed or was killed, none once a restore has
//!   repaired the connections; with `--network-lock skip` none at all;
//! * a task with connections in each half-closed state (CLOSE_WAIT,
//!   FIN_WAIT2, FIN_WAIT1, LAST_ACK, CLOSING) to a peer outside the tree,
//!   over IPv4 and IPv6: each comes back in its state, with its queued
//!   bytes, and both ends then see the bytes and the EOFs they are owed;
//! * a connection still being made (SYN_SENT, its listener's queue full):
//!   it comes back connecting and completes once the listener has room.
//! * a listener without SO_REUSEADDR whose closed connections left
//!   TIME_WAITs on its port comes back (crit ends them); one whose port
//!   a live socket holds fails, and the holder goes on.

mod kit;

use kit::dump::{action_script, alive, eventually, ok, reap, stderr, Kit, Prog, FIND_CRIT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock's rules in both tables (iptables prints the mark lowercase).
fn lock_rules() -> Vec<String> {
    let iptables = kit::host::require("iptables", "iptables");
    let mut v = Vec::new();
    for prog in [iptables, kit::host::require("ip6tables", "iptables")] {
        let o = std::process::Command::new(prog).arg("-S").output().unwrap();
        v.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.to_lowercase().contains("0xc114"))
                .map(str::to_string),
        );
    }
    v
}

/// The nftables lock tables (`CRIU-<run id>`) that hold a connection on
/// `port`, from `nft list table` (a port as a word of its elements).
fn nft_tables_for(port: u16) -> Vec<String> {
    let nft = |args: &[&str]| {
        std::process::Command::new("nft")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    let p = port.to_string();
    nft(&["list", "tables"])
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with("CRIU-"))
        .filter(|t| {
            nft(&["list", "table", "inet", t])
                .split(|c: char| !c.is_ascii_digit())
                .any(|w| w == p)
        })
        .map(str::to_string)
        .collect()
}

/// Whether the connection on `port` is locked as `lock` locks it, and by
/// nothing else.
fn locked_by(lock: &str, port: u16) -> bool {
    let (rules, tables) = (rules_for(port).len(), nft_tables_for(port).len());
    match lock {
        "iptables" => rules == 2 && tables == 0,
        "nftables" => rules == 0 && tables == 1,
        _ => rules == 0 && tables == 0,
    }
}

fn rules_for(port: u16) -> Vec<String> {
    let p = port.to_string();
    lock_rules()
        .into_iter()
        .filter(|r| r.split_whitespace().any(|w| w == p))
        .collect()
}

/// Removes the lock's rules of a port when dropped, so that a failed test
/// leaves none behind.
struct Unlock(u16);

impl Drop for Unlock {
    fn drop(&mut self) {
        for t in nft_tables_for(self.0) {
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", "inet", &t])
                .status();
        }
        for r in rules_for(self.0) {
            let prog = if r.contains("::") {
                "ip6tables"
            } else {
                "iptables"
            };
            let args: Vec<&str> = r.split_whitespace().skip(1).collect();
            let _ = std::process::Command::new(prog)
                .arg("-D")
                .args(&args)
                .status();
        }
    }
}

fn signal(pid: i32, s: Signal) {
    let _ = kill(Pid::from_raw(pid), s);
}

fn wait_file(p: &Path) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Ok(s) = std::fs::read_to_string(p) {
            if !s.is_empty() {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("no result in {}", p.display())
}

/// The (local port, remote port, state) of `pid`'s TCP sockets: its
/// socket inodes looked up in /proc/PID/net/tcp and tcp6.
fn tcp_of(pid: i32) -> Vec<(u16, u16, u8)> {
    let mine: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut v = Vec::new();
    for f in ["tcp", "tcp6"] {
        let t = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
        for l in t.lines().skip(1) {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() > 9 && mine.iter().any(|i| i == w[9]) {
                let port =
                    |s: &str| u16::from_str_radix(s.rsplit(':').next().unwrap(), 16).unwrap();
                let state = u8::from_str_radix(w[3], 16).unwrap();
                v.push((port(w[1]), port(w[2]), state));
            }
        }
    }
    v
}

/// The (local, remote) ports of `pid`'s established TCP connections.
fn ports_of(pid: i32) -> Vec<(u16, u16)> {
    tcp_of(pid)
        .into_iter()
        .filter(|s| s.2 == 1)
        .map(|s| (s.0, s.1))
        .collect()
}

/// The parent's and the child's pid from tcp_pair's READY line.
fn pair_pids(prog: &Prog) -> Vec<i32> {
    let w: Vec<i32> = prog
        .ready
        .split_whitespace()
        .skip(1)
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(w.len(), 2, "{}", prog.ready);
    w
}

fn restore(kit: &Kit, dir: &Path, pids: &[i32]) {
    reap(pids, Duration::from_secs(5));
    let o = kit.crit(&["restore", "-d", "-D", dir.to_str().unwrap()]);
    ok(&o);
}

fn pair(v6: bool) {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let out = kit.path("res");
    let prog: Prog = kit.start(
        "tcp_pair",
        &[if v6 { "6" } else { "4" }, out.to_str().unwrap()],
    );
    let w = pair_pids(&prog);
    let (parent, child) = (w[0], w[1]);
    let port = ports_of(parent)
        .first()
        .map(|p| p.0)
        .expect("the parent's connection");
    let _unlock = Unlock(port);
    let dir = kit.path("img");
    let o = kit.dump(parent, &dir, &["--tcp-established"]);
    ok(&o);
    // Dumped and killed: locked both ways, for both ends.
    assert_eq!(rules_for(port).len(), 4, "{:?}", lock_rules());
    let streams: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("tcp-stream-"))
        .collect();
    assert_eq!(streams.len(), 2);
    restore(&kit, &dir, &[parent, child]);
    assert!(alive(parent) && alive(child));
    assert!(rules_for(port).is_empty(), "unlocked: {:?}", lock_rules());
    signal(parent, Signal::SIGUSR1);
    signal(child, Signal::SIGUSR1);
    let p = wait_file(&kit.path("res.parent"));
    let c = wait_file(&kit.path("res.child"));
    kit::dump::kill_tree(parent);
    assert_eq!((p.as_str(), c.as_str()), ("OK", "OK"));
}

#[test]
fn a_connection_inside_the_tree_keeps_its_queues_over_ipv4() {
    pair(false);
}

#[test]
fn a_connection_inside_the_tree_keeps_its_queues_over_ipv6() {
    pair(true);
}

fn pattern(n: usize, who: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i * 131 + who * 7 + (i >> 12)) as u8)
        .collect()
}

/// `lock`: the dump's `--network-lock`. With "skip" nothing keeps the
/// peer's packets from the dead socket's port, which would answer with a
/// reset: the peer stays quiet until the restore.
fn outside_peer(v6: bool, fail_first: bool, lock: &str) {
    if lock == "nftables" {
        kit::host::require("nft", "nftables");
    }
    let quiet = lock == "skip";
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let l = TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
    let port = l.local_addr().unwrap().port();
    let res = kit.path("res");
    // The peer sends 60,000 bytes before the dump and 40,000 while the
    // task is gone; with `fail_first` none, so that a close of the task's
    // end would send a FIN (with bytes unread it sends a reset, which the
    // lock drops and which leaves nothing behind).
    let (before, during) = match fail_first || quiet {
        false => (60_000usize, 40_000usize),
        true => (0, 0),
    };
    let prog = kit.start(
        "tcp_peer",
        &[
            &port.to_string(),
            &(before + during).to_string(),
            if v6 { "6" } else { "4" },
            res.to_str().unwrap(),
        ],
    );
    let w: Vec<&str> = prog.ready.split_whitespace().collect();
    let (pid, sent): (i32, usize) = (w[1].parse().unwrap(), w[2].parse().unwrap());
    let (mut peer, _) = l.accept().unwrap();
    let _unlock = Unlock(port);
    let all = pattern(before + during, 2);
    peer.write_all(&all[..before]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &["--tcp-established", "--network-lock", lock]));
    assert!(
        locked_by(lock, port),
        "{lock}: {:?} {:?}",
        lock_rules(),
        nft_tables_for(port)
    );
    // In flight while the task is gone: dropped by the lock and sent
    // again later, never answered with a reset.
    peer.write_all(&all[before..]).unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut read_some = |peer: &mut TcpStream, got: &mut Vec<u8>| loop {
        match peer.read(&mut buf) {
            Ok(0) => panic!("the peer saw the connection closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("the peer saw {e}"),
        }
    };
    if !quiet {
        read_some(&mut peer, &mut got);
        std::thread::sleep(Duration::from_millis(300));
        read_some(&mut peer, &mut got);
    }
    if fail_first {
        // A restore that fails at its last step but one (a post-restore
        // script), or is killed there (SIGKILL), closes the connection
        // without a packet: still locked, the peer sees nothing, and the
        // next restore takes it over. So does one killed at pre-resume,
        // once the connection is out of repair mode and unlocked: its
        // janitor puts it back into repair mode and locks it again.
        let kill = format!("{FIND_CRIT}kill -9 $p");
        let fail = [
            ("post-restore", "exit 3"),
            ("post-restore", &kill),
            ("pre-resume", &kill),
        ];
        for (at, action) in fail {
            let script = action_script(&kit, "fail.sh", at, action);
            let how = if action == "exit 3" {
                "failed"
            } else {
                "killed"
            };
            reap(&[pid], Duration::from_secs(5));
            let o = kit.crit(&[
                "restore",
                "-d",
                "-D",
                dir.to_str().unwrap(),
                "--action-script",
                script.to_str().unwrap(),
            ]);
            assert!(!o.status.success(), "{how} at {at}: {}", stderr(&o));
            // The janitor of a killed restore may still be at work.
            assert!(
                eventually(|| locked_by(lock, port)),
                "{how} at {at}: {:?} {:?}",
                lock_rules(),
                nft_tables_for(port)
            );
            std::thread::sleep(Duration::from_millis(300));
            read_some(&mut peer, &mut got);
        }
    }
    restore(&kit, &dir, &[pid]);
    assert!(
        locked_by("none", port),
        "unlocked: {:?} {:?}",
        lock_rules(),
        nft_tables_for(port)
    );
    signal(pid, Signal::SIGUSR1);
    peer.set_nonblocking(false).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while got.len() < sent {
        let n = peer
            .read(&mut buf)
            .expect("the task's bytes after the restore");
        assert!(n > 0, "closed after {} of {sent} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got == pattern(sent, 1),
        "the task's bytes arrive whole and in order"
    );
    peer.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    peer.read_exact(&mut pong).unwrap();
    let r = wait_file(&res);
    kit::dump::kill_tree(pid);
    assert_eq!(&pong, b"pong");
    assert_eq!(r, "OK");
}

#[test]
fn a_peer_outside_the_tree_sees_no_reset_or_gap() {
    outside_peer(false, false, "iptables");
}

#[test]
fn a_peer_outside_the_tree_sees_no_reset_or_gap_over_ipv6() {
    outside_peer(true, false, "iptables");
}

#[test]
fn a_failed_restore_leaves_the_connection_to_the_next_one() {
    outside_peer(false, true, "iptables");
}

#[test]
fn an_nftables_lock_keeps_the_peer_out_until_the_restore() {
    outside_peer(false, false, "nftables");
}

#[test]
fn an_nftables_lock_outlives_a_failed_or_killed_restore() {
    outside_peer(false, true, "nftables");
}

#[test]
fn a_dump_without_a_lock_leaves_the_peer_to_the_caller() {
    outside_peer(true, false, "skip");
}

#[test]
fn leave_running_and_a_failed_dump_let_the_connection_go_on() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    for (extra, fails) in [(&["-R"][..], false), (&["packet"][..], true)] {
        let out = kit.path("res");
        let _ = std::fs::remove_file(kit.path("res.parent"));
        let _ = std::fs::remove_file(kit.path("res.child"));
        let mut args = vec!["4", out.to_str().unwrap()];
        if fails {
            args.push("packet");
        }
        let prog = kit.start("tcp_pair", &args);
        let w = pair_pids(&prog);
        let port = ports_of(w[0]).first().map(|p| p.0).expect("a connection");
        let _unlock = Unlock(port);
        let dir = kit.path(if fails { "img-f" } else { "img-r" });
        let mut d = vec!["--tcp-established"];
        if !fails {
            d.extend(extra);
        }
        let o = kit.dump(w[0], &dir, &d);
        if fails {
            assert!(!o.status.success(), "a packet ring is refused");
            assert!(stderr(&o).contains("ring"), "{}", stderr(&o));
        } else {
            ok(&o);
        }
        assert!(rules_for(port).is_empty(), "{:?}", lock_rules());
        signal(w[0], Signal::SIGUSR1);
        signal(w[1], Signal::SIGUSR1);
        let p = wait_file(&kit.path("res.parent"));
        let c = wait_file(&kit.path("res.child"));
        kit::dump::kill_tree(w[0]);
        reap(&w, Duration::from_secs(5));
        assert_eq!((p.as_str(), c.as_str()), ("OK", "OK"), "{extra:?}");
    }
}

/// A connection waiting in a listener's accept queue belongs to no task:
/// refused, naming --skip-in-flight, unless the dump is told to leave it
/// out (as CRIU); the tree then restores and its own connection works.
#[test]
fn connections_in_flight_are_refused_or_skipped() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let out = kit.path("res");
    let prog = kit.start("tcp_pair", &["4", out.to_str().unwrap()]);
    let w = pair_pids(&prog);
    let port = ports_of(w[0]).first().map(|p| p.0).expect("a connection");
    let _unlock = Unlock(port);
    // Ours, never accepted: the listener's port is the parent's side.
    let _waiting = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let dir = kit.path("img");
    let o = kit.dump(w[0], &dir, &["--tcp-established"]);
    assert!(!o.status.success(), "refused");
    let e = stderr(&o);
    assert!(
        e.contains("in flight") && e.contains("--skip-in-flight"),
        "{e}"
    );
    assert!(rules_for(port).is_empty(), "a refused dump leaves no lock");
    ok(&kit.dump(w[0], &dir, &["--tcp-established", "--skip-in-flight"]));
    restore(&kit, &dir, &w);
    signal(w[0], Signal::SIGUSR1);
    signal(w[1], Signal::SIGUSR1);
    let p = wait_file(&kit.path("res.parent"));
    let c = wait_file(&kit.path("res.child"));
    kit::dump::kill_tree(w[0]);
    assert_eq!((p.as_str(), c.as_str()), ("OK", "OK"));
}

/// `--tcp-close`: a dump records the connection without repair or lock,
/// and a restore (of that dump, or with the option of a repaired one)
/// gives the task a closed socket in its place, leaving no lock.
#[test]
fn tcp_close_restores_connections_closed() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    for (dump_opt, restore_opt) in [
        ("--tcp-close", None),
        ("--tcp-established", Some("--tcp-close")),
    ] {
        let out = kit.path("res");
        let prog = kit.start("tcp_pair", &["4", out.to_str().unwrap()]);
        let w = pair_pids(&prog);
        let port = ports_of(w[0]).first().map(|p| p.0).expect("a connection");
        let _unlock = Unlock(port);
        let dir = kit.path(&format!("img{dump_opt}"));
        ok(&kit.dump(w[0], &dir, &[dump_opt]));
        let locked = rules_for(port).len();
        assert_eq!(
            locked,
            if restore_opt.is_some() { 4 } else { 0 },
            "{dump_opt}"
        );
        reap(&w, Duration::from_secs(5));
        let mut args = vec!["restore", "-d", "-D", dir.to_str().unwrap()];
        args.extend(restore_opt);
        ok(&kit.crit(&args));
        assert!(alive(w[0]) && alive(w[1]));
        assert!(rules_for(port).is_empty(), "{:?}", lock_rules());
        // The tasks hold sockets, none of them connected.
        assert!(ports_of(w[0]).is_empty() && ports_of(w[1]).is_empty());
        let fd4 = std::fs::read_link(format!("/proc/{}/fd/4", w[0])).unwrap();
        assert!(fd4.to_string_lossy().starts_with("socket:"), "{fd4:?}");
        kit::dump::kill_tree(w[0]);
        reap(&w, Duration::from_secs(5));
    }
}

/// A tree with a network namespace of its own (made with `unshare
/// --net`): the dump locks the whole namespace as CRIU does (a `CRIU`
/// chain) and lifts it with -R; a restore into a new namespace locks it
/// while the connections are repaired, and both ends read and talk on.
#[test]
fn a_tree_in_its_own_network_namespace() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let bin = kit.build("tcp_pair");
    let start = |out: &Path| -> (std::process::Child, Vec<i32>) {
        let mut c = std::process::Command::new("unshare")
            .arg("--net")
            .arg(&bin)
            .args(["4", out.to_str().unwrap(), "lo"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("unshare --net");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(c.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.starts_with("READY"), "{line:?}");
        let w = line
            .split_whitespace()
            .skip(1)
            .take(2)
            .map(|s| s.parse().unwrap())
            .collect();
        (c, w)
    };
    let chain = |pid: i32| {
        let o = std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "iptables", "-S"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).contains("CRIU")
    };
    // -R: locked while dumped, unlocked after, the pair talks on.
    let out = kit.path("r");
    let (_c, w) = start(&out);
    ok(&kit.dump(w[0], &kit.path("img-r"), &["--tcp-established", "-R"]));
    assert!(!chain(w[0]), "the namespace is unlocked after -R");
    signal(w[0], Signal::SIGUSR1);
    signal(w[1], Signal::SIGUSR1);
    let r = (
        wait_file(&kit.path("r.parent")),
        wait_file(&kit.path("r.child")),
    );
    kit::dump::kill_tree(w[0]);
    reap(&w, Duration::from_secs(5));
    assert_eq!((r.0.as_str(), r.1.as_str()), ("OK", "OK"), "-R");
    // Killed and restored into a new namespace.
    let out = kit.path("k");
    let (_c, w) = start(&out);
    let dir = kit.path("img-k");
    ok(&kit.dump(w[0], &dir, &["--tcp-established"]));
    restore(&kit, &dir, &w);
    assert!(
        !chain(w[0]),
        "the new namespace is unlocked once the tree runs"
    );
    signal(w[0], Signal::SIGUSR1);
    signal(w[1], Signal::SIGUSR1);
    let r = (
        wait_file(&kit.path("k.parent")),
        wait_file(&kit.path("k.child")),
    );
    kit::dump::kill_tree(w[0]);
    assert_eq!((r.0.as_str(), r.1.as_str()), ("OK", "OK"), "restored");
}

/// The states of tests/programs/tcp_half.c's connections, in the order
/// it connects (the kernel's numbers).
const HALF: [(&str, u8); 5] = [
    ("CLOSE_WAIT", 8),
    ("FIN_WAIT2", 5),
    ("FIN_WAIT1", 4),
    ("LAST_ACK", 9),
    ("CLOSING", 11),
];

/// The state of each of `ports` among `pid`'s sockets, by name.
fn half_states(pid: i32, ports: &[u16]) -> Vec<String> {
    let all = tcp_of(pid);
    ports
        .iter()
        .map(|p| {
            let st = all.iter().find(|s| s.0 == *p).map(|s| s.2);
            HALF.iter()
                .find(|h| Some(h.1) == st)
                .map_or_else(|| format!("{st:?}"), |h| h.0.to_string())
        })
        .collect()
}

/// What the peer's end of a connection reads up to the task's EOF.
fn read_to_eof(s: &mut TcpStream, what: &str) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("{what}: the peer read {} bytes, then {e}", got.len()));
    got
}

fn half_closed(v6: bool) {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let l = TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
    // A small receive buffer (inherited by what it accepts): the task's
    // writes close the window soon.
    nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::RcvBuf, &16384).unwrap();
    let port = l.local_addr().unwrap().port();
    let _unlock = Unlock(port);
    let (cw_bytes, fw2_bytes) = (70_000usize, 50_000usize);
    // The peer's side of the states that need it before the task is
    // ready: CLOSE_WAIT's bytes and FIN, LAST_ACK's FIN.
    let acceptor = std::thread::spawn(move || {
        let mut c: Vec<TcpStream> = (0..HALF.len()).map(|_| l.accept().unwrap().0).collect();
        c[0].write_all(&pattern(cw_bytes, 2)).unwrap();
        c[0].shutdown(std::net::Shutdown::Write).unwrap();
        c[3].shutdown(std::net::Shutdown::Write).unwrap();
        c
    });
    let res = kit.path("res");
    let prog = kit.start(
        "tcp_half",
        &[
            &port.to_string(),
            if v6 { "6" } else { "4" },
            res.to_str().unwrap(),
            &cw_bytes.to_string(),
            &fw2_bytes.to_string(),
        ],
    );
    let w: Vec<usize> = prog
        .ready
        .split_whitespace()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (pid, filled) = (w[0] as i32, [w[1], w[2], w[3]]);
    let mut c = acceptor.join().unwrap();
    let ports: Vec<u16> = c.iter().map(|s| s.peer_addr().unwrap().port()).collect();
    // CLOSING: our FIN after the task's was queued behind its bytes.
    c[4].shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_to_eof(&mut c[1], "FIN_WAIT2 before the dump"),
        b"early"
    );
    let want: Vec<String> = HALF.iter().map(|h| h.0.to_string()).collect();
    assert!(
        eventually(|| half_states(pid, &ports) == want),
        "before the dump: {:?}",
        half_states(pid, &ports)
    );
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &["--tcp-established"]));
    assert_eq!(rules_for(port).len(), 2 * HALF.len(), "{:?}", lock_rules());
    restore(&kit, &dir, &[pid]);
    assert!(rules_for(port).is_empty(), "unlocked: {:?}", lock_rules());
    assert_eq!(half_states(pid, &ports), want, "restored");
    signal(pid, Signal::SIGUSR1);
    c[1].write_all(&pattern(fw2_bytes, 2)).unwrap();
    c[1].shutdown(std::net::Shutdown::Write).unwrap();
    for (k, n) in [(2usize, filled[0]), (3, filled[1]), (4, filled[2])] {
        let got = read_to_eof(&mut c[k], HALF[k].0);
        assert!(
            got == pattern(n, 1),
            "{}: the task's {n} bytes whole and in order, then EOF (got {})",
            HALF[k].0,
            got.len()
        );
        if k == 2 {
            c[2].write_all(b"ack").unwrap();
            c[2].shutdown(std::net::Shutdown::Write).unwrap();
        }
    }
    assert_eq!(read_to_eof(&mut c[0], "CLOSE_WAIT"), b"bye");
    let r = wait_file(&res);
    kit::dump::kill_tree(pid);
    assert_eq!(r, "OK");
}

#[test]
fn half_closed_connections_come_back_in_their_states() {
    half_closed(false);
}

#[test]
fn half_closed_connections_come_back_in_their_states_over_ipv6() {
    half_closed(true);
}

/// A listener on loopback whose accept queue holds one connection:
/// `listen(0)`, and a connection no one accepts. The kernel drops the
/// SYNs of any other until that one is accepted.
fn full_listener(v6: bool) -> (TcpListener, TcpStream) {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
    use nix::sys::socket::{SockaddrIn, SockaddrIn6};
    let fam = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let r = if v6 {
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn6::from("[::1]:0".parse::<std::net::SocketAddrV6>().unwrap()),
        )
    } else {
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from("127.0.0.1:0".parse::<std::net::SocketAddrV4>().unwrap()),
        )
    };
    r.unwrap();
    listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let l = TcpListener::from(fd);
    let filler = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (l, filler)
}

fn connecting(v6: bool) {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let (l, _filler) = full_listener(v6);
    let port = l.local_addr().unwrap().port();
    let _unlock = Unlock(port);
    let res = kit.path("res");
    let prog = kit.start(
        "tcp_connecting",
        &[
            &port.to_string(),
            if v6 { "6" } else { "4" },
            res.to_str().unwrap(),
        ],
    );
    let pid = prog.pid;
    let syn_sent = |pid: i32| tcp_of(pid).iter().any(|s| s.1 == port && s.2 == 2);
    assert!(eventually(|| syn_sent(pid)), "SYN_SENT: {:?}", tcp_of(pid));
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &["--tcp-established"]));
    assert_eq!(rules_for(port).len(), 2, "{:?}", lock_rules());
    restore(&kit, &dir, &[pid]);
    assert!(rules_for(port).is_empty(), "unlocked: {:?}", lock_rules());
    assert!(syn_sent(pid), "restored connecting: {:?}", tcp_of(pid));
    signal(pid, Signal::SIGUSR1);
    // Room in the queue: the task's SYN, sent again, gets in.
    drop(l.accept().unwrap());
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hi = [0u8; 2];
    c.read_exact(&mut hi).unwrap();
    c.write_all(b"ok").unwrap();
    drop(c);
    let r = wait_file(&res);
    kit::dump::kill_tree(pid);
    assert_eq!(&hi, b"hi");
    assert_eq!(r, "OK");
}

#[test]
fn a_connection_being_made_completes_after_the_restore() {
    connecting(false);
}

#[test]
fn a_connection_being_made_completes_after_the_restore_over_ipv6() {
    connecting(true);
}

/// One line from the server of tests/programs/tcp_server.c, which closes
/// the connection first and so leaves a TIME_WAIT on its own port.
fn hello(v6: bool, port: u16) -> String {
    let host = if v6 { "::1" } else { "127.0.0.1" };
    let mut s = TcpStream::connect((host, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    s.read_to_string(&mut line).unwrap();
    line
}

/// A listener on [::]:`port` with IPV6_V6ONLY.
fn v6only_listener(port: u16) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{
        bind, listen, setsockopt, socket, sockopt::Ipv6V6Only, AddressFamily, Backlog, SockFlag,
        SockType, SockaddrIn6,
    };
    let s = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    setsockopt(&s, Ipv6V6Only, &true).unwrap();
    let any = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0);
    bind(std::os::fd::AsRawFd::as_raw_fd(&s), &SockaddrIn6::from(any)).unwrap();
    listen(&s, Backlog::new(1).unwrap()).unwrap();
    s
}

/// Whether a socket in TIME_WAIT (state 06) has `port` as its local port.
fn time_wait_on(port: u16) -> bool {
    ["tcp", "tcp6"].iter().any(|f| {
        let t = std::fs::read_to_string(format!("/proc/net/{f}")).unwrap_or_default();
        t.lines().skip(1).any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 3
                && w[3] == "06"
                && w[1].rsplit(':').next() == Some(format!("{port:04X}").as_str())
        })
    })
}

/// A server restarted right after serving: its listener, bound without
/// SO_REUSEADDR, comes back on its port although a connection it closed
/// left a TIME_WAIT there (which keeps CRIU 4.2 from binding it): crit
/// ends that TIME_WAIT (an IPv6-only listener on the port does not stop
/// it), and the server reads its own SO_REUSEADDR as dumped.
#[test]
fn a_listener_without_reuseaddr_comes_back_beside_a_time_wait() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    for v6 in [false, true] {
        let prog = kit.start("tcp_server", &[if v6 { "6" } else { "4" }]);
        let w = prog.ready_numbers();
        let (pid, port) = (w[0], w[1] as u16);
        assert_eq!(hello(v6, port), "hello reuse=0\n");
        let end = Instant::now() + Duration::from_secs(5);
        while !time_wait_on(port) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(time_wait_on(port), "the server's close left a TIME_WAIT");
        let dir = kit.path(if v6 { "img6" } else { "img4" });
        ok(&kit.dump(pid, &dir, &[]));
        reap(&[pid], Duration::from_secs(5));
        // A live IPv6-only listener on the port does not hold 127.0.0.1's.
        let _v6only = (!v6).then(|| v6only_listener(port));
        assert!(time_wait_on(port), "still there at the restore");
        let o = kit.crit(&["restore", "-d", "-v", "-D", dir.to_str().unwrap()]);
        ok(&o);
        assert!(stderr(&o).contains("ended 1 TIME_WAIT"), "{}", stderr(&o));
        assert!(!time_wait_on(port));
        let again = hello(v6, port);
        kit::dump::kill_tree(pid);
        reap(&[pid], Duration::from_secs(5));
        assert_eq!(again, "hello reuse=0\n", "v6={v6}");
    }
}

/// A port a live socket holds is not taken from it: the restore fails
/// naming the port, the holder goes on accepting, and the TIME_WAIT the
/// holder's served connection left there is not ended for nothing.
#[test]
fn a_listener_whose_port_a_live_socket_holds_fails_to_restore() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let prog = kit.start("tcp_server", &["4"]);
    let w = prog.ready_numbers();
    let (pid, port) = (w[0], w[1] as u16);
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    reap(&[pid], Duration::from_secs(5));
    let holder = TcpListener::bind(("127.0.0.1", port)).unwrap();
    {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        drop(holder.accept().unwrap());
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(5);
    while !time_wait_on(port) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(time_wait_on(port), "the holder's close left a TIME_WAIT");
    let o = kit.crit(&["restore", "-d", "-D", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!("bind port {port}")) && e.contains("EADDRINUSE"),
        "{e}"
    );
    assert!(!alive(pid), "nothing of the tree runs");
    assert!(time_wait_on(port), "the TIME_WAIT stays");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut a, _) = holder.accept().unwrap();
    a.write_all(b"still here").unwrap();
    drop(a);
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "still here");
}
