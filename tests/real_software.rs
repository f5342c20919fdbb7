//! Real servers come back and serve: redis-server (reached by its unix
//! socket, answering with the keys it held), nginx (a master and two
//! workers, listening on a unix socket and a TCP port),
//! `python3 -m http.server` and postgres (System V shared memory in the
//! host's ipc namespace; answers queries on its table), each dumped with `crit dump` (the tree is
//! killed) and restored with `crit restore -d`.
//!
//! The programs come from the distribution: a missing one is installed
//! with apt-get (tests run as root, as CI does), so that `cargo test` alone
//! works on a fresh machine; where that fails, the test fails with the
//! command that installs it.
//! Each runs in a session of its own, under this test process as child
//! subreaper, and listens only on loopback and on unix sockets in a temp
//! dir. No client connection is open at dump time (an established TCP
//! connection is refused by the dump): the test waits until none of the
//! server's sockets is a connection before dumping.

mod kit;
use kit::host::require;
use kit::proc::{alive, children};

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn temp_dir() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    // nginx's workers run as nobody: they must reach the files served.
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    t
}

/// Starts a server in a session of its own, stdin from /dev/null, output
/// to `log`, with no descriptor but 0-2 (none of the test harness's).
fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("create log");
    let err = out.try_clone().unwrap();
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// The pids of the tree rooted at `pid`, root first.
fn tree(pid: i32) -> Vec<i32> {
    let mut v = vec![pid];
    let mut i = 0;
    while i < v.len() {
        let c = children(v[i]);
        v.extend(c);
        i += 1;
    }
    v
}

fn stat_fields(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Reaps each pid (a task whose parent died comes to this subreaper a
/// moment later) until it is gone from /proc, so the pid is free again.
fn reap(pids: &[i32]) {
    let left = kit::proc::reap(pids, WAIT);
    assert!(
        left.is_empty(),
        "pids {left:?} are still there after they were killed"
    );
}

/// Kills and reaps a server's tasks when a test ends, passed or not.
struct Cleanup(Vec<i32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &p in &self.0 {
            kit::proc::kill_tree(p);
        }
        kit::proc::reap(&self.0, WAIT);
    }
}

/// Inodes of the sockets the task holds.
fn socket_inodes(pid: i32) -> Vec<u64> {
    let mut v = Vec::new();
    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in d.flatten() {
            if let Ok(l) = std::fs::read_link(e.path()) {
                let l = l.to_string_lossy().into_owned();
                if let Some(n) = l.strip_prefix("socket:[") {
                    if let Ok(i) = n.trim_end_matches(']').parse() {
                        v.push(i);
                    }
                }
            }
        }
    }
    v
}

/// A socket of the tree that is a client connection: a TCP socket in any
/// state but LISTEN, or a unix socket named `unix_path` that is not
/// listening (accepted connections carry their listener's name).
fn connections(pids: &[i32], unix_path: Option<&Path>) -> Vec<String> {
    let held: std::collections::HashSet<u64> =
        pids.iter().flat_map(|&p| socket_inodes(p)).collect();
    let mut found = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let s = std::fs::read_to_string(f).unwrap_or_default();
        for l in s.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() < 10 {
                continue;
            }
            let ino: u64 = c[9].parse().unwrap_or(0);
            if held.contains(&ino) && c[3] != "0A" {
                found.push(format!("tcp {} -> {} state {}", c[1], c[2], c[3]));
            }
        }
    }
    if let Some(path) = unix_path {
        let s = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        for l in s.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() < 8 {
                continue;
            }
            let flags = u64::from_str_radix(c[3], 16).unwrap_or(0);
            let ino: u64 = c[6].parse().unwrap_or(0);
            let listening = flags & 0x10000 != 0;
            if held.contains(&ino) && !listening && Path::new(c[7]) == path {
                found.push(format!("unix {} inode {ino}", c[7]));
            }
        }
    }
    found
}

/// Waits until the server has closed every client connection.
fn wait_idle(pids: &[i32], unix_path: Option<&Path>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = connections(pids, unix_path);
        if c.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server still holds client connections: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        match f() {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// An HTTP/1.0 GET of `path`; returns the status line and the body.
fn http_get<S: Read + Write>(mut s: S, path: &str) -> Result<(String, String), String> {
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut r = String::new();
    s.read_to_string(&mut r).map_err(|e| e.to_string())?;
    let status = r.lines().next().unwrap_or("").to_string();
    let body = r
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((status, body))
}

fn get_tcp(port: u16, path: &str) -> Result<(String, String), String> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    http_get(s, path)
}

fn get_unix(sock: &Path, path: &str) -> Result<(String, String), String> {
    let s = UnixStream::connect(sock).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    http_get(s, path)
}

fn expect_page(r: Result<(String, String), String>, body: &str, what: &str) {
    match r {
        Ok((status, b)) => {
            assert!(
                status.contains(" 200 ") && b == body,
                "{what}: got {status:?} with body {b:?}"
            )
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

/// `crit dump -t PID -D DIR` (the tree is killed); returns its stderr and
/// how long it took.
fn crit_dump(pid: i32, dir: &Path) -> (String, Duration) {
    let t = Instant::now();
    let o = kit::restore::crit()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .output()
        .unwrap();
    let d = t.elapsed();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "crit dump of pid {pid} failed: {e}");
    (e, d)
}

fn crit_restore(dir: &Path) -> (String, Duration) {
    let t = Instant::now();
    let o = kit::restore::crit()
        .args(["restore", "-d", "-D"])
        .arg(dir)
        .output()
        .unwrap();
    let d = t.elapsed();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "crit restore -d -D {dir:?} failed: {e}");
    (e, d)
}

/// Dumps the tree of `child` (killing it), checks it is gone (pids free,
/// `answers` false), restores it and checks the same pids run again.
fn dump_and_restore(
    name: &str,
    child: &mut Child,
    pids: &[i32],
    img: &Path,
    answers: &dyn Fn() -> bool,
) {
    let (dlog, dt) = crit_dump(pids[0], img);
    let _ = child.wait();
    reap(pids);
    for &p in pids {
        assert!(!alive(p), "{name}: pid {p} still runs after the dump");
    }
    assert!(!answers(), "{name}: still answers after the dump");
    no_restart_codes(name, img);
    let (rlog, rt) = crit_restore(img);
    eprintln!(
        "{name}: dump {:.3} s ({}); restore {:.3} s {}",
        dt.as_secs_f64(),
        dlog.trim(),
        rt.as_secs_f64(),
        rlog.trim()
    );
    for &p in pids {
        assert!(alive(p), "{name}: pid {p} is not running after restore");
    }
}

/// The images hold registers any restorer can load as they are: a thread
/// dumped inside a blocking call (every one of these servers has some) is
/// written to re-enter it, never with -ERESTART* in rax, which CRIU's
/// restore would hand to the program (redis then aborts in a futex wait).
fn no_restart_codes(name: &str, img: &Path) {
    let mut threads = 0;
    for e in std::fs::read_dir(img).unwrap() {
        let p = e.unwrap().path();
        let f = p.file_name().unwrap().to_string_lossy().into_owned();
        if !f.starts_with("core-") {
            continue;
        }
        let core: crit::image::pb::CoreEntry =
            crit::image::typed::read_one(&p, "CORE").unwrap_or_else(|e| panic!("{f}: {e}"));
        let g = core.thread_info.expect("thread_info").gpregs;
        assert!(
            !(-516..=-512).contains(&(g.ax as i64)),
            "{name}: {f} has rax {} (orig_rax {}): an interrupted syscall left unrestarted",
            g.ax as i64,
            g.orig_ax as i64
        );
        threads += 1;
    }
    assert!(threads > 0, "{name}: no core image");
}

// ---- redis ----

fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut m = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        m.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    m
}

/// One RESP reply: simple strings, errors, integers and bulk strings (nil
/// as None); arrays are not needed here.
fn resp_reply(r: &mut impl BufRead) -> Result<Option<String>, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(Some(rest.to_string())),
        "-" => Err(format!("redis error: {rest}")),
        "$" => {
            let n: i64 = rest
                .parse()
                .map_err(|_| format!("bad bulk length {rest:?}"))?;
            if n < 0 {
                return Ok(None);
            }
            let mut b = vec![0u8; n as usize + 2];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            b.truncate(n as usize);
            String::from_utf8(b).map(Some).map_err(|e| e.to_string())
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

struct Redis {
    w: Box<dyn Write>,
    r: BufReader<Box<dyn Read>>,
}

impl Redis {
    fn connect(sock: &Path) -> Result<Redis, String> {
        let w = UnixStream::connect(sock).map_err(|e| e.to_string())?;
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r: Box<dyn Read> = Box::new(w.try_clone().unwrap());
        Ok(Redis {
            w: Box::new(w),
            r: BufReader::new(r),
        })
    }

    fn connect_tcp(port: u16) -> Result<Redis, String> {
        let w = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r: Box<dyn Read> = Box::new(w.try_clone().unwrap());
        Ok(Redis {
            w: Box::new(w),
            r: BufReader::new(r),
        })
    }

    fn call(&mut self, args: &[&str]) -> Result<Option<String>, String> {
        self.w
            .write_all(&resp_command(args))
            .map_err(|e| e.to_string())?;
        resp_reply(&mut self.r)
    }
}

#[test]
fn redis_server_keeps_its_keys() {
    let redis = require("redis-server", "redis-server");
    let _g = kit::restore::lock();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = temp_dir();
    let sock = tmp.path().join("redis.sock");
    let mut child = spawn(
        Command::new(&redis)
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(tmp.path()),
        &tmp.path().join("redis.log"),
    );
    let root = child.id() as i32;
    let mut guard = Cleanup(vec![root]);
    wait_until("redis-server does not answer PING", || {
        let mut c = Redis::connect(&sock)?;
        match c.call(&["PING"])? {
            Some(s) if s == "PONG" => Ok(()),
            o => Err(format!("PING answered {o:?}")),
        }
    });
    let keys: Vec<(String, String)> = (0..8)
        .map(|i| {
            (
                format!("key:{i}"),
                format!("value {i} {}", "x".repeat(i * 100)),
            )
        })
        .collect();
    {
        let mut c = Redis::connect(&sock).unwrap();
        for (k, v) in &keys {
            assert_eq!(c.call(&["SET", k, v]).unwrap().as_deref(), Some("OK"));
        }
        assert_eq!(c.call(&["DBSIZE"]).unwrap().as_deref(), Some("8"));
        // The check that no client is left sees this one.
        let open = connections(&tree(root), Some(&sock));
        assert_eq!(open.len(), 1, "redis-server connections: {open:?}");
    }
    let pids = tree(root);
    guard.0 = pids.clone();
    wait_idle(&pids, Some(&sock));
    let img = tmp.path().join("img");
    let answers = || {
        Redis::connect(&sock)
            .and_then(|mut c| c.call(&["PING"]))
            .is_ok()
    };
    dump_and_restore("redis-server", &mut child, &pids, &img, &answers);
    let mut c = Redis::connect(&sock).expect("connect to the restored redis-server");
    for (k, v) in &keys {
        assert_eq!(
            c.call(&["GET", k]).unwrap().as_deref(),
            Some(v.as_str()),
            "restored redis-server: GET {k}"
        );
    }
    assert_eq!(c.call(&["DBSIZE"]).unwrap().as_deref(), Some("8"));
    // It still takes writes.
    assert_eq!(
        c.call(&["SET", "after", "restore"]).unwrap().as_deref(),
        Some("OK")
    );
    assert_eq!(
        c.call(&["GET", "after"]).unwrap().as_deref(),
        Some("restore")
    );
}

/// A client connected to redis-server over TCP stays connected across
/// the dump (which kills the server) and the restore: its next command
/// is answered on the same connection (crit dump --tcp-established).
#[test]
fn redis_keeps_its_tcp_client_connected() {
    let redis = require("redis-server", "redis-server");
    require("iptables", "iptables");
    let _g = kit::restore::lock();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = temp_dir();
    let port = free_port();
    let mut child = spawn(
        Command::new(&redis)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(tmp.path()),
        &tmp.path().join("redis.log"),
    );
    let root = child.id() as i32;
    let mut guard = Cleanup(vec![root]);
    wait_until(
        "redis-server does not answer PING on TCP",
        || match Redis::connect_tcp(port)?.call(&["PING"])? {
            Some(s) if s == "PONG" => Ok(()),
            o => Err(format!("PING answered {o:?}")),
        },
    );
    let mut c = Redis::connect_tcp(port).unwrap();
    assert_eq!(
        c.call(&["SET", "held", "across"]).unwrap().as_deref(),
        Some("OK")
    );
    let pids = tree(root);
    guard.0 = pids.clone();
    let img = tmp.path().join("img");
    let o = kit::restore::crit()
        .args(["dump", "--tcp-established", "-t", &root.to_string(), "-D"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = child.wait();
    reap(&pids);
    crit_restore(&img);
    for &p in &pids {
        assert!(alive(p), "pid {p} is not running after restore");
    }
    // The same connection: the server answers it, and knows the key.
    assert_eq!(c.call(&["GET", "held"]).unwrap().as_deref(), Some("across"));
    assert_eq!(
        c.call(&["SET", "after", "1"]).unwrap().as_deref(),
        Some("OK")
    );
    assert_eq!(c.call(&["DBSIZE"]).unwrap().as_deref(), Some("2"));
    // And new clients too.
    let mut n = Redis::connect_tcp(port).unwrap();
    assert_eq!(n.call(&["GET", "after"]).unwrap().as_deref(), Some("1"));
}

// ---- nginx ----

#[test]
fn nginx_master_and_two_workers_serve_on_unix_and_tcp() {
    let nginx = require("nginx", "nginx-light");
    let _g = kit::restore::lock();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = temp_dir();
    let d = tmp.path();
    let sock = d.join("nginx.sock");
    let port = free_port();
    let www = d.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::create_dir(d.join("tmp")).unwrap();
    let page = "hello from nginx\n";
    std::fs::write(www.join("index.html"), page).unwrap();
    let conf = format!(
        "daemon off;\n\
         master_process on;\n\
         worker_processes 2;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/tmp;\n\
           server {{\n\
             listen unix:{sock};\n\
             listen 127.0.0.1:{port};\n\
             root {www};\n\
           }}\n\
         }}\n",
        d = d.display(),
        sock = sock.display(),
        www = www.display(),
    );
    let conf_path = d.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut child = spawn(
        Command::new(&nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .current_dir(d),
        &d.join("nginx.out"),
    );
    let root = child.id() as i32;
    let mut guard = Cleanup(vec![root]);
    wait_until("nginx does not serve", || {
        get_tcp(port, "/index.html")?;
        get_unix(&sock, "/index.html")?;
        if tree(root).len() < 3 {
            return Err("fewer than two workers".into());
        }
        Ok(())
    });
    expect_page(get_tcp(port, "/index.html"), page, "nginx over TCP");
    expect_page(get_unix(&sock, "/index.html"), page, "nginx over unix");
    let pids = tree(root);
    guard.0 = pids.clone();
    assert_eq!(pids.len(), 3, "nginx: expected a master and two workers");
    {
        // Idle clients on both listeners: the check that no client is left
        // sees them, and nginx closes them once they hang up.
        let _t = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _u = UnixStream::connect(&sock).unwrap();
        wait_until("nginx does not accept idle clients", || {
            let c = connections(&pids, Some(&sock));
            if c.len() == 2 {
                Ok(())
            } else {
                Err(format!("connections seen: {c:?}"))
            }
        });
    }
    wait_idle(&pids, Some(&sock));
    let img = d.join("img");
    let answers = || get_tcp(port, "/").is_ok() || get_unix(&sock, "/").is_ok();
    dump_and_restore("nginx", &mut child, &pids, &img, &answers);
    for _ in 0..4 {
        expect_page(
            get_tcp(port, "/index.html"),
            page,
            "restored nginx over TCP",
        );
        expect_page(
            get_unix(&sock, "/index.html"),
            page,
            "restored nginx over unix",
        );
    }
    // Still a master and its two workers, with their pids.
    let mut now = tree(root);
    now.sort();
    let mut was = pids.clone();
    was.sort();
    assert_eq!(now, was, "restored nginx: master and workers");
    for &w in &pids[1..] {
        assert_eq!(
            stat_fields(w).map(|x| x.1),
            Some(root),
            "worker {w} is not the master's child"
        );
    }
    for &p in &pids {
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap();
        assert_eq!(comm.trim(), "nginx", "pid {p}");
    }
}

// ---- python3 -m http.server ----

#[test]
fn python_http_server_serves() {
    let python = require("python3", "python3");
    let _g = kit::restore::lock();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = temp_dir();
    let www = tmp.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let page = "hello from python\n";
    std::fs::write(www.join("index.html"), page).unwrap();
    let port = free_port();
    let mut child = spawn(
        Command::new(&python)
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(&www)
            .current_dir(tmp.path()),
        &tmp.path().join("http.log"),
    );
    let root = child.id() as i32;
    let mut guard = Cleanup(vec![root]);
    wait_until("python3 -m http.server does not serve", || {
        get_tcp(port, "/index.html").map(|_| ())
    });
    expect_page(get_tcp(port, "/index.html"), page, "http.server");
    let pids = tree(root);
    guard.0 = pids.clone();
    wait_idle(&pids, None);
    // ThreadingHTTPServer serves each request in a thread of its own: wait
    // until the last one has exited.
    wait_until("http.server keeps a request thread", || {
        let st = std::fs::read_to_string(format!("/proc/{root}/status")).unwrap_or_default();
        match st.lines().find(|l| l.starts_with("Threads:")) {
            Some(l) if l.split_whitespace().nth(1) == Some("1") => Ok(()),
            l => Err(format!("{l:?}")),
        }
    });
    let img = tmp.path().join("img");
    let answers = || get_tcp(port, "/").is_ok();
    dump_and_restore("python3 -m http.server", &mut child, &pids, &img, &answers);
    for _ in 0..3 {
        expect_page(get_tcp(port, "/index.html"), page, "restored http.server");
    }
}

// ---- postgres ----

/// The postgres server binary of the distribution (under
/// /usr/lib/postgresql/VERSION/bin), installing it if it is missing.
fn postgres_bin() -> PathBuf {
    let found = || -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin/postgres"))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v.pop()
    };
    if let Some(p) = found() {
        return p;
    }
    require("psql", "postgresql");
    found().expect("postgres is not installed: apt-get install -y postgresql")
}

/// Removes the System V segment a postgres server made (its id is on the
/// last line of postmaster.pid) and the POSIX segments it left in
/// /dev/shm (its dynamic shared memory, which a killed server does not
/// remove) when the test ends.
struct PgShm(PathBuf, Vec<std::ffi::OsString>);

impl PgShm {
    fn new(data: PathBuf) -> PgShm {
        PgShm(data, pg_dsm_segments())
    }
}

/// The names of postgres' dynamic shared memory segments in /dev/shm.
fn pg_dsm_segments() -> Vec<std::ffi::OsString> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with("PostgreSQL."))
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for PgShm {
    fn drop(&mut self) {
        for n in pg_dsm_segments() {
            if !self.1.contains(&n) {
                let _ = std::fs::remove_file(Path::new("/dev/shm").join(n));
            }
        }
        let pidfile = std::fs::read_to_string(self.0.join("postmaster.pid")).unwrap_or_default();
        let id = pidfile
            .lines()
            .nth(6)
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(id) = id {
            let _ = crit::sys::ipc::Kind::Shm.remove(id);
        }
    }
}

/// Runs one SQL statement through psql on the server's unix socket
/// directory; returns its unaligned output.
fn psql(psql: &Path, sockdir: &Path, sql: &str) -> Result<String, String> {
    let o = Command::new(psql)
        .args(["-X", "-A", "-t", "-U", "postgres", "-d", "postgres", "-h"])
        .arg(sockdir)
        .args(["-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// postgres (a postmaster and its five helpers, System V shared memory
/// in the host's ipc namespace, run as the postgres user) answers
/// queries on its data after a dump and restore, and still takes writes.
#[test]
fn postgres_answers_queries_on_its_data() {
    let postgres = postgres_bin();
    let bin = postgres.parent().unwrap().to_path_buf();
    let psql_bin = require("psql", "postgresql-client");
    let user = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("the postgres user (made by the postgresql package)");
    let _g = kit::restore::lock();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    nix::unistd::chown(tmp.path(), Some(user.uid), Some(user.gid)).unwrap();
    let init = Command::new(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(init.success(), "initdb failed");
    let _shm = PgShm::new(data.clone());
    let mut child = spawn(
        Command::new(&postgres)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(tmp.path())
            .args(["-c", "listen_addresses="])
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw()),
        &tmp.path().join("postgres.log"),
    );
    let root = child.id() as i32;
    let mut guard = Cleanup(vec![root]);
    let sockdir = tmp.path().to_path_buf();
    wait_until("postgres does not answer", || {
        psql(&psql_bin, &sockdir, "select 1").map(|_| ())
    });
    psql(
        &psql_bin,
        &sockdir,
        "create table t(x int, s text); insert into t select g, repeat('v', g) from generate_series(1, 1000) g",
    )
    .unwrap();
    // The postmaster and its five helpers, and no backend of a client
    // still on its way out.
    wait_until("postgres is not down to its postmaster and helpers", || {
        let n = tree(root).len();
        (n == 6).then_some(()).ok_or(format!("{n} tasks"))
    });
    let pids = tree(root);
    guard.0 = pids.clone();
    let sock = tmp.path().join(".s.PGSQL.5432");
    wait_idle(&pids, Some(&sock));
    let img = tmp.path().join("img");
    let answers = || psql(&psql_bin, &sockdir, "select 1").is_ok();
    dump_and_restore("postgres", &mut child, &pids, &img, &answers);
    let sum = psql(
        &psql_bin,
        &sockdir,
        "select count(*), sum(x), sum(length(s)) from t",
    );
    assert_eq!(
        sum.as_deref(),
        Ok("1000|500500|500500"),
        "restored postgres"
    );
    psql(&psql_bin, &sockdir, "insert into t values (1001, 'after')").unwrap();
    let n = psql(&psql_bin, &sockdir, "select count(*) from t");
    assert_eq!(n.as_deref(), Ok("1001"), "restored postgres takes writes");
}

// ---- redis in a container ----

/// redis-server as the init of a container made with unshare: its own
/// pid, mount, uts, ipc and network namespaces, a root fs of its own
/// whose /usr and /etc are read-only binds of the host's (external
/// mounts, as a container manager passes them), a tmpfs on /tmp holding
/// its socket. Dumped and restored by crit, it answers with its keys.
#[test]
fn redis_in_a_container_keeps_its_keys() {
    let redis = require("redis-server", "redis-server");
    let _g = kit::restore::lock();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = temp_dir();
    let root = tmp.path().join("root");
    for d in ["usr", "etc", "tmp", "proc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (l, t) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        std::os::unix::fs::symlink(t, root.join(l)).unwrap();
    }
    let r = root.display();
    let script = tmp.path().join("start.sh");
    std::fs::write(
        &script,
        format!(
            "set -e\n\
             mount --make-rprivate /\n\
             mount --bind {r} {r}\n\
             mount --bind -o ro /usr {r}/usr\n\
             mount --bind -o ro /etc {r}/etc\n\
             mount -t tmpfs -o size=16m tmpfs {r}/tmp\n\
             mount -t proc proc {r}/proc\n\
             hostname redis-ctr\n\
             cd {r} && mkdir .old && pivot_root . .old && umount -l /.old && rmdir /.old\n\
             : > /tmp/empty\n\
             exec </tmp/empty >/tmp/redis.log 2>&1\n\
             exec /usr/bin/setsid {} --port 0 --unixsocket /tmp/redis.sock --save '' --appendonly no\n",
            redis.display()
        ),
    )
    .unwrap();
    let mut child = spawn(
        Command::new("unshare")
            .args([
                "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "sh",
            ])
            .arg(&script),
        &tmp.path().join("unshare.log"),
    );
    let mut guard = Cleanup(vec![child.id() as i32]);
    let mut init = 0;
    wait_until("the container's init did not start", || {
        init = children(child.id() as i32)
            .first()
            .copied()
            .ok_or("no child")?;
        Ok(())
    });
    guard.0.push(init);
    let sock = PathBuf::from(format!("/proc/{init}/root/tmp/redis.sock"));
    wait_until("redis-server in the container does not answer", || {
        Redis::connect(&sock)?.call(&["PING"]).map(|_| ())
    });
    {
        let mut c = Redis::connect(&sock).unwrap();
        assert_eq!(
            c.call(&["SET", "in", "container"]).unwrap().as_deref(),
            Some("OK")
        );
    }
    let img = tmp.path().join("img");
    let d = kit::restore::crit()
        .args(["dump", "-t", &init.to_string(), "-D"])
        .arg(&img)
        .args(["--external", "mnt[/usr]:usr", "--external", "mnt[/etc]:etc"])
        .output()
        .unwrap();
    assert!(
        d.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&d.stderr)
    );
    let _ = child.wait();
    reap(&[init]);
    let pidfile = tmp.path().join("pid");
    let o = kit::restore::crit()
        .args(["restore", "-d", "-D"])
        .arg(&img)
        .arg("--root")
        .arg(&root)
        .args([
            "--external",
            "mnt[usr]:/usr",
            "--external",
            "mnt[etc]:/etc",
            "--pidfile",
        ])
        .arg(&pidfile)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let host: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    guard.0 = vec![host];
    let sock = PathBuf::from(format!("/proc/{host}/root/tmp/redis.sock"));
    let mut c = Redis::connect(&sock).expect("connect to the restored container's redis");
    assert_eq!(
        c.call(&["GET", "in"]).unwrap().as_deref(),
        Some("container")
    );
    assert_eq!(
        c.call(&["SET", "after", "restore"]).unwrap().as_deref(),
        Some("OK")
    );
    let status = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "pid 1 in its namespace"
    );
}
