//! The few `/proc` reads the tracing code needs.
//!
//! Errors keep the kind of the failed read (`NotFound` when the process or
//! thread is gone) and name the file.

use std::fs;
use std::io;

fn read(path: &str) -> io::Result<String> {
    read_bytes(path)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// A status file (one piece), as text.
fn read_status(path: &str) -> io::Result<String> {
    read_one_piece(path)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// The whole of a /proc file. Not `fs::read`: it stats the file first,
/// useless in /proc (sizes are 0), and then starts with tiny reads; a page
/// at first reads most /proc files in one call and the end in another.
pub fn read_bytes(path: impl AsRef<std::path::Path>) -> io::Result<Vec<u8>> {
    let mut v = Vec::with_capacity(4096);
    io::Read::read_to_end(&mut fs::File::open(path)?, &mut v)?;
    Ok(v)
}

/// A /proc file the kernel shows in one piece (a single-record seq_file
/// such as stat, status or limits, or fdinfo): one read when it fits in a
/// page, which a shorter answer proves.
pub fn read_one_piece(path: impl AsRef<std::path::Path>) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let mut v = vec![0u8; 4096];
    let n = io::Read::read(&mut f, &mut v)?;
    v.truncate(n);
    if n == 4096 {
        io::Read::read_to_end(&mut f, &mut v)?;
    }
    Ok(v)
}

/// The thread ids of process `pid` (`/proc/PID/task`), ascending.
pub fn tids(pid: i32) -> io::Result<Vec<i32>> {
    let path = format!("/proc/{pid}/task");
    let dir = fs::read_dir(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    let mut v: Vec<i32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// The children of thread `tid` of process `pid`
/// (`/proc/PID/task/TID/children`); `None` where the kernel has no such
/// file (it needs CONFIG_PROC_CHILDREN). A thread that is gone has none.
pub fn thread_children(pid: i32, tid: i32) -> io::Result<Option<Vec<i32>>> {
    let path = format!("/proc/{pid}/task/{tid}/children");
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(
            s.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // No file for a thread that is gone, or none at all.
            let mine = format!("/proc/self/task/{}/children", nix::unistd::gettid());
            match std::path::Path::new(&mine).exists() {
                true => Ok(Some(Vec::new())),
                false => Ok(None),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(Some(Vec::new())),
        Err(e) => Err(io::Error::new(e.kind(), format!("{path}: {e}"))),
    }
}

/// The state letter of thread `tid` of process `pid`
/// (`/proc/PID/task/TID/stat`, field 3: R, S, D, T, t, Z, X, ...).
pub fn thread_state(pid: i32, tid: i32) -> io::Result<char> {
    let path = format!("/proc/{pid}/task/{tid}/stat");
    let s = read(&path)?;
    stat_after_comm(&s)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|f| f.chars().next())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: malformed")))
}

/// Whether process `pid` is on its way out: SIGKILL pending (in its main
/// thread, where a fatal signal to any thread lands too, or shared) or
/// its main thread exiting (PF_EXITING in `/proc/PID/stat`'s flags).
pub fn dying(pid: i32) -> io::Result<bool> {
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    const PF_EXITING: u64 = 0x4;
    let [own, shared] = status_fields(pid, ["SigPnd", "ShdPnd"])?;
    let mask = |v: Option<String>| {
        v.and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or(0)
    };
    if (mask(own) | mask(shared)) & SIGKILL_BIT != 0 {
        return Ok(true);
    }
    let path = format!("/proc/{pid}/stat");
    let s = read(&path)?;
    let flags = stat_after_comm(&s)
        .and_then(|rest| rest.split_whitespace().nth(6))
        .and_then(|f| f.parse::<u64>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: malformed")))?;
    Ok(flags & PF_EXITING != 0)
}

/// The text of a stat line after the `(comm)` field.
fn stat_after_comm(s: &str) -> Option<&str> {
    s.rfind(')').map(|i| &s[i + 1..])
}

/// The value of a `Name:` line of `/proc/PID/status`, trimmed.
pub fn status_field(pid: i32, name: &str) -> io::Result<Option<String>> {
    status_field_of(&format!("/proc/{pid}/status"), name)
}

/// The values of the `Name:` lines of `/proc/PID/status` named in
/// `names`, in that order (None for a missing one), from one read.
pub fn status_fields<const N: usize>(
    pid: i32,
    names: [&str; N],
) -> io::Result<[Option<String>; N]> {
    let s = read_status(&format!("/proc/{pid}/status"))?;
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for l in s.lines() {
        if let Some((k, v)) = l.split_once(':') {
            if let Some(i) = names.iter().position(|n| *n == k) {
                out[i] = Some(v.trim().to_string());
            }
        }
    }
    Ok(out)
}

/// The NSpid line of `/proc/PID/status`: the pid in crit's namespace
/// first, in the innermost last (just `pid` on kernels without it).
pub fn ns_pids(pid: u32) -> io::Result<Vec<u32>> {
    let v = status_field(pid as i32, "NSpid")?.unwrap_or_else(|| pid.to_string());
    v.split_whitespace()
        .map(|n| n.parse::<u32>())
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/status: NSpid {v:?}"),
            )
        })
}

/// The pid of `pid` in its innermost pid namespace.
pub fn ns_pid(pid: u32) -> io::Result<u32> {
    Ok(ns_pids(pid)?.last().copied().unwrap_or(pid))
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`).
pub fn children(pid: u32) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for tid in tids(pid as i32)? {
        let text = read(&format!("/proc/{pid}/task/{tid}/children"))?;
        out.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    Ok(out)
}

/// The thread of process `host` (a pid in crit's namespace) whose id in
/// its own pid namespace is `ns_tid`; `ns_tid` itself when the process
/// is in crit's pid namespace.
pub fn host_tid(host: u32, ns_tid: u32) -> io::Result<u32> {
    if ns_pids(host)?.len() < 2 {
        return Ok(ns_tid);
    }
    for tid in tids(host as i32)? {
        let v = status_field_of(&format!("/proc/{host}/task/{tid}/status"), "NSpid")?;
        if v.as_deref().and_then(|v| v.split_whitespace().last()) == Some(&ns_tid.to_string()) {
            return Ok(tid as u32);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("pid {host}: no thread {ns_tid} in its pid namespace"),
    ))
}

fn status_field_of(path: &str, name: &str) -> io::Result<Option<String>> {
    let s = read_status(path)?;
    Ok(s.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    }))
}

/// `(pid, ppid)` of every process in `/proc` (threads are not listed).
/// Processes that vanish during the scan are skipped.
pub fn ppid_map() -> io::Result<Vec<(i32, i32)>> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(s) = read_one_piece(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let s = String::from_utf8_lossy(&s);
        let ppid = stat_after_comm(&s)
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|f| f.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            out.push((pid, ppid));
        }
    }
    Ok(out)
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    /// `rwxp`/`rwxs` as printed.
    pub perms: String,
    pub offset: u64,
    /// Path or `[vdso]`, `[stack]`, ... (empty for anonymous memory).
    pub name: String,
}

/// `/proc/PID/maps` parsed (PID may be a tid).
pub fn maps(pid: i32) -> io::Result<Vec<MapsEntry>> {
    let path = format!("/proc/{pid}/maps");
    let s = read(&path)?;
    let mut out = Vec::new();
    for line in s.lines() {
        let mut it = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(off)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let _dev = it.next();
        let _ino = it.next();
        let name = it.next().unwrap_or("").trim_start().to_string();
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(a, 16),
            u64::from_str_radix(b, 16),
            u64::from_str_radix(off, 16),
        ) else {
            continue;
        };
        out.push(MapsEntry {
            start,
            end,
            perms: perms.to_string(),
            offset,
            name,
        });
    }
    Ok(out)
}

/// This process's vDSO (start, image), read through /proc/self/mem; None
/// where the kernel maps none (`vdso=0`).
pub fn own_vdso() -> io::Result<Option<(u64, Vec<u8>)>> {
    use std::os::unix::fs::FileExt;
    let Some(m) = maps(std::process::id() as i32)?
        .into_iter()
        .find(|m| m.name == "[vdso]")
    else {
        return Ok(None);
    };
    let mut img = vec![0u8; (m.end - m.start) as usize];
    std::fs::File::open("/proc/self/mem")?.read_exact_at(&mut img, m.start)?;
    Ok(Some((m.start, img)))
}
