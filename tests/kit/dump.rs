//! The dump tests: build a C program from tests/programs with `cc`, run
//! it under a child subreaper, dump it with the crit binary, read the
//! images, and reap everything so pids are freed. A [`Kit`] holds the
//! engine lock ([`super::serial`]), so reaping never steals another test's
//! exit status.

pub use super::proc::{alive, kill_tree, my_children, reap, reap_all};

use crit::image::pb;
use crit::image::typed;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct Kit {
    pub tmp: tempfile::TempDir,
    _lock: super::serial::Serial,
}

pub struct Prog {
    pub child: Child,
    pub pid: i32,
    pub ready: String,
}

impl Prog {
    /// The numbers the program's ready line gives after its first word
    /// (pids and tids, mostly).
    pub fn ready_numbers(&self) -> Vec<i32> {
        self.ready
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect()
    }
}

impl Kit {
    pub fn new() -> Kit {
        let g = super::serial::lock();
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        Kit {
            tmp: tempfile::tempdir().expect("tempdir"),
            _lock: g,
        }
    }

    pub fn path(&self, n: &str) -> PathBuf {
        self.tmp.path().join(n)
    }

    /// Compiles tests/programs/NAME.c into the temp dir.
    pub fn build(&self, name: &str) -> PathBuf {
        let out = self.path(name);
        super::cc::compile(
            &super::cc::source("programs", name),
            &out,
            &["-O1", "-g", "-pthread"],
        );
        out
    }

    /// Starts a built program and waits for its "READY ..." line.
    pub fn start(&self, name: &str, args: &[&str]) -> Prog {
        let bin = self.build(name);
        let mut child = Command::new(&bin)
            .args(args)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Not the test's stderr: that may be a terminal, which a dump
            // refuses without --shell-job.
            .stderr(
                std::fs::File::create(self.path(&format!("{name}.stderr"))).expect("stderr file"),
            )
            .spawn()
            .expect("spawn program");
        let out = child.stdout.take().expect("stdout");
        let mut r = std::io::BufReader::new(out);
        let mut line = String::new();
        r.read_line(&mut line).expect("read READY");
        assert!(line.starts_with("READY"), "program said {line:?}");
        // Keep the pipe open in the background so the program never gets EPIPE.
        std::mem::forget(r);
        let pid = child.id() as i32;
        Prog {
            child,
            pid,
            ready: line.trim().to_string(),
        }
    }

    pub fn crit(&self, args: &[&str]) -> Output {
        super::crit_out(args)
    }

    /// The self-checking programs' round trip: starts program `name`
    /// with `args` (one of them its `result` file), dumps its tree, lets
    /// it go, runs `edit` on the images, restores the tree detached
    /// (`--shell-job`) and returns what its `n` tasks say of their own
    /// state on SIGUSR1.
    pub fn round_trip(
        &self,
        name: &str,
        args: &[&str],
        result: &Path,
        n: usize,
        edit: impl FnOnce(&Path),
    ) -> String {
        self.round_trip_with(name, args, result, n, &[], edit)
    }

    /// As [`Kit::round_trip`], with `both` (options such as
    /// `--file-locks`) given to the dump and to the restore.
    pub fn round_trip_with(
        &self,
        name: &str,
        args: &[&str],
        result: &Path,
        n: usize,
        both: &[&str],
        edit: impl FnOnce(&Path),
    ) -> String {
        self.round_trip_opts(name, args, result, n, (both, both), edit)
    }

    /// As [`Kit::round_trip`], with options for the dump and for the
    /// restore (`opts.0`, `opts.1`).
    pub fn round_trip_opts(
        &self,
        name: &str,
        args: &[&str],
        result: &Path,
        n: usize,
        opts: (&[&str], &[&str]),
        edit: impl FnOnce(&Path),
    ) -> String {
        let mut prog = self.start(name, args);
        let pid = prog.pid;
        let tree = super::proc::tree(pid);
        let dir = self.path("img");
        ok(&self.dump(pid, &dir, opts.0));
        let _ = prog.child.wait();
        // The others come to the test's subreaper once their parent is gone.
        let left = reap(&tree, std::time::Duration::from_secs(5));
        assert!(left.is_empty(), "still there after the dump: {left:?}");
        edit(&dir);
        let mut a = vec!["restore", "-d", "--shell-job", "-D", dir.to_str().unwrap()];
        a.extend_from_slice(opts.1);
        ok(&self.crit(&a));
        super::proc::ask_tree(pid, result, n)
    }

    /// `crit dump -t PID -D DIR extra...`
    pub fn dump(&self, pid: i32, dir: &Path, extra: &[&str]) -> Output {
        let mut a = vec![
            "dump".to_string(),
            "-t".into(),
            pid.to_string(),
            "-D".into(),
            dir.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        self.crit(&a)
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        reap_all();
    }
}

pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "crit failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The files of an images directory; none when a failed dump removed
/// the directory it made.
pub fn images(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every image except raw pages and tmpfs archives decodes, and encodes
/// back to the same bytes.
pub fn roundtrip_all(kit: &Kit, dir: &Path) {
    for n in images(dir) {
        if n.starts_with("pages-") || n.starts_with("tmpfs-dev-") {
            continue;
        }
        let p = dir.join(&n);
        let json = kit.path(&format!("{n}.json"));
        let back = kit.path(&format!("{n}.back"));
        let o = kit.crit(&[
            "decode",
            "-i",
            p.to_str().unwrap(),
            "-o",
            json.to_str().unwrap(),
        ]);
        ok(&o);
        let o = kit.crit(&[
            "encode",
            "-i",
            json.to_str().unwrap(),
            "-o",
            back.to_str().unwrap(),
        ]);
        ok(&o);
        let a = std::fs::read(&p).unwrap();
        let b = std::fs::read(&back).unwrap();
        assert!(a == b, "{n}: decode+encode changed the bytes");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{n}: mode {mode:o}");
    }
}

pub fn one<T: prost::Message + Default>(dir: &Path, name: &str, magic: &str) -> T {
    typed::read_one(&dir.join(name), magic).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn all<T: prost::Message + Default>(dir: &Path, name: &str, magic: &str) -> Vec<T> {
    typed::read_all(&dir.join(name), magic).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn files(dir: &Path) -> Vec<pb::FileEntry> {
    all(dir, "files.img", "FILES")
}

/// Reads `len` bytes at `vaddr` of a task from its pagemap and pages images.
pub fn read_dumped(dir: &Path, pid: i32, vaddr: u64, len: usize) -> Option<Vec<u8>> {
    let pagemap = dir.join(format!("pagemap-{pid}.img"));
    let (pages_id, entries) = crit::restore::plan::read_pagemap(&pagemap, Vec::new()).ok()?;
    let pages = std::fs::read(dir.join(format!("pages-{pages_id}.img"))).ok()?;
    let mut out = Vec::with_capacity(len);
    let mut at = vaddr;
    while out.len() < len {
        let mut off = 0u64;
        let mut found = None;
        for e in &entries {
            let n = e.nr_pages.unwrap_or(0);
            if at >= e.vaddr && at < e.vaddr + n * 4096 {
                found = Some(off + (at - e.vaddr));
                break;
            }
            off += n * 4096;
        }
        let o = found? as usize;
        let take = (len - out.len()).min(4096 - (at as usize % 4096));
        out.extend_from_slice(pages.get(o..o + take)?);
        at += take as u64;
    }
    Some(out)
}

/// A base port such that `n` consecutive ports from it are free on
/// 127.0.0.1 for TCP and UDP (below the ephemeral range, so
/// connections made meanwhile do not take them).
pub fn free_ports(n: u16) -> u16 {
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
    };
    let seed = std::process::id() as u16;
    (0..2000u16)
        .map(|i| 20000 + (seed.wrapping_add(i.wrapping_mul(7))) % 12000)
        .find(|&b| (0..n).all(|k| free(b + k)))
        .expect("no free ports between 20000 and 32000")
}

/// Shell lines that set `$p` to the pid of the crit running the script
/// (an ancestor: a shell may be between), or to nothing if none is.
pub const FIND_CRIT: &str = "p=$PPID\nfor i in 1 2 3 4; do\n\
     [ \"$(cat /proc/$p/comm)\" = crit ] && break\n\
     p=$(awk '{print $4}' /proc/$p/stat)\ndone\n\
     [ \"$(cat /proc/$p/comm)\" = crit ] || p=\n";

/// An action script (`--action-script`) at `<kit>/NAME` that runs the
/// shell lines `body` at `action` (such as post-restore) and nothing at
/// the others.
pub fn action_script(kit: &Kit, name: &str, action: &str, body: &str) -> PathBuf {
    let script = kit.path(name);
    std::fs::write(
        &script,
        format!("#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = {action} ] || exit 0\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

/// An action script that holds crit at an action until the test lets it
/// go on: it creates `mark` there, then waits for `go` to exist.
pub struct Hold {
    pub script: PathBuf,
    pub mark: PathBuf,
    pub go: PathBuf,
}

impl Hold {
    pub fn new(kit: &Kit, action: &str) -> Hold {
        let (mark, go) = (kit.path(&format!("at-{action}")), kit.path("go"));
        let body = format!(
            "touch {}\nwhile [ ! -e {} ]; do sleep 0.01; done",
            mark.display(),
            go.display()
        );
        let script = action_script(kit, &format!("hold-at-{action}.sh"), action, &body);
        Hold { script, mark, go }
    }

    /// Ready for the next restore.
    pub fn reset(&self) {
        let _ = std::fs::remove_file(&self.mark);
        let _ = std::fs::remove_file(&self.go);
    }

    /// Whether crit reached the action (within 20 s).
    pub fn reached(&self) -> bool {
        eventually(|| self.mark.exists())
    }

    pub fn release(&self) {
        std::fs::write(&self.go, b"").unwrap();
    }
}

/// An action script that kills the crit running it with SIGKILL at
/// `action`, which crit cannot catch.
pub fn sigkill_script(kit: &Kit, action: &str) -> PathBuf {
    let name = format!("sigkill-at-{action}.sh");
    action_script(kit, &name, action, &format!("{FIND_CRIT}kill -9 $p"))
}

/// Polls `cond` until it holds or 20 s have passed; whether it held.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// Starts `crit ARGS` in the background with its stdio on /dev/null
/// (a restore the test watches or kills meanwhile).
pub fn spawn_crit<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    super::crit()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crit")
}
