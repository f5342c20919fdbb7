//! Parsers for the /proc files the dump reads: stat, status, limits,
//! children, task lists, auxv, namespaces. Pure text/byte parsing; every
//! error names the pid and file.

use super::error::{DumpError, ProcFault};
use crate::error::{Error, Result};
use std::path::PathBuf;

pub fn path(pid: i32, what: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{what}"))
}

pub fn read(pid: i32, what: &str) -> Result<Vec<u8>> {
    let p = path(pid, what);
    crate::sys::procfs::read_bytes(&p).map_err(|source| {
        DumpError::Proc {
            pid,
            path: p,
            source,
        }
        .into()
    })
}

/// A /proc file shown in one piece (stat, status, limits, fdinfo): one
/// read when it fits in a page, which is the common case.
pub fn read_small(pid: i32, what: &str) -> Result<String> {
    let p = path(pid, what);
    match crate::sys::procfs::read_one_piece(&p) {
        Ok(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
        Err(source) => Err(DumpError::Proc {
            pid,
            path: p,
            source,
        }
        .into()),
    }
}

pub fn read_string(pid: i32, what: &str) -> Result<String> {
    // Valid UTF-8 (the common case) is taken as it is, not copied.
    Ok(String::from_utf8(read(pid, what)?)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// /proc/PID/`file` does not read as expected.
fn bad(pid: i32, file: &'static str, fault: ProcFault) -> Error {
    DumpError::ProcParse { pid, file, fault }.into()
}

/// The fields of /proc/PID/stat the dump uses.
#[derive(Debug, Default, Clone)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// The controlling terminal's device, encoded as the kernel shows it
    /// (0: none), and its foreground process group.
    pub tty_nr: u32,
    pub tpgid: i32,
    pub flags: u32,
    pub nice: i64,
    pub num_threads: i64,
    /// Clock ticks after boot when the task started: with the pid, names
    /// a task for good (pids are reused).
    pub start_time: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub exit_code: u32,
}

pub fn parse_stat(pid: i32, text: &str) -> Result<Stat> {
    let open = text
        .find('(')
        .ok_or_else(|| bad(pid, "stat", ProcFault::NoOpenParen))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| bad(pid, "stat", ProcFault::NoCloseParen))?;
    let comm = text[open + 1..close].to_string();
    // Fields after the comm, numbered from 3 (state) as in proc(5).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let f = |n: usize| -> Result<&str> {
        rest.get(n - 3)
            .copied()
            .ok_or_else(|| bad(pid, "stat", ProcFault::FieldMissing(n)))
    };
    let num = |n: usize| -> Result<u64> {
        let s = f(n)?;
        s.parse::<u64>()
            .or_else(|_| s.parse::<i64>().map(|v| v as u64))
            .map_err(|_| bad(pid, "stat", ProcFault::FieldNotNumber(n, s.to_string())))
    };
    Ok(Stat {
        comm,
        state: f(3)?.chars().next().unwrap_or('?'),
        ppid: num(4)? as i32,
        pgid: num(5)? as i32,
        sid: num(6)? as i32,
        tty_nr: num(7)? as u32,
        tpgid: num(8)? as i32,
        flags: num(9)? as u32,
        nice: num(19)? as i64,
        num_threads: num(20)? as i64,
        start_time: num(22)?,
        start_code: num(26)?,
        end_code: num(27)?,
        start_stack: num(28)?,
        start_data: num(45)?,
        end_data: num(46)?,
        start_brk: num(47)?,
        arg_start: num(48)?,
        arg_end: num(49)?,
        env_start: num(50)?,
        env_end: num(51)?,
        exit_code: num(52)? as u32,
    })
}

pub fn stat(pid: i32) -> Result<Stat> {
    parse_stat(pid, &read_small(pid, "stat")?)
}

/// When task `pid` started (None if it is gone): with the pid, what
/// tells a task from a later one that reuses its pid.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).ok().map(|s| s.start_time)
}

/// Whether the task that started at `start` still has its memory: not
/// gone, not a later task with its pid, not a zombie (whose /proc files
/// on memory fail with ESRCH on recent kernels).
pub fn still_lives(pid: i32, start: u64) -> bool {
    stat(pid).is_ok_and(|s| s.start_time == start && !matches!(s.state, 'Z' | 'X' | 'x'))
}

pub fn thread_stat(pid: i32, tid: i32) -> Result<Stat> {
    parse_stat(tid, &read_small(pid, &format!("task/{tid}/stat"))?)
}

/// The fields of /proc/PID/status the dump uses.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub state: char,
    pub tgid: i32,
    pub ppid: i32,
    pub tracer: i32,
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub ns_pid: Vec<i32>,
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: u32,
    pub seccomp: u32,
    pub thp_enabled: Option<bool>,
    /// VmSize, in bytes (None where status has no such line: a zombie).
    pub vm_size: Option<u64>,
    pub umask: Option<u32>,
}

pub fn parse_status(pid: i32, text: &str) -> Result<Status> {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        // A value of line `k` that does not parse.
        let field = |v: &str| {
            let fault = ProcFault::Field {
                key: k.to_string(),
                value: v.to_string(),
            };
            bad(pid, "status", fault)
        };
        let hex = |v: &str| u64::from_str_radix(v, 16).map_err(|_| field(v));
        let nums = |v: &str| -> Result<Vec<u32>> {
            v.split_whitespace()
                .map(|x| x.parse::<u32>().map_err(|_| field(v)))
                .collect()
        };
        match k {
            "State" => s.state = v.chars().next().unwrap_or('?'),
            "Tgid" => s.tgid = v.parse().unwrap_or(0),
            "PPid" => s.ppid = v.parse().unwrap_or(0),
            "TracerPid" => s.tracer = v.parse().unwrap_or(0),
            "Uid" | "Gid" => {
                let n = nums(v)?;
                if n.len() != 4 {
                    return Err(field(v));
                }
                let a = [n[0], n[1], n[2], n[3]];
                if k == "Uid" {
                    s.uids = a
                } else {
                    s.gids = a
                }
            }
            "Groups" => s.groups = nums(v)?,
            "NSpid" => {
                s.ns_pid = v
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            }
            "SigPnd" => s.sig_pnd = hex(v)?,
            "ShdPnd" => s.shd_pnd = hex(v)?,
            "SigBlk" => s.sig_blk = hex(v)?,
            "CapInh" => s.cap_inh = hex(v)?,
            "CapPrm" => s.cap_prm = hex(v)?,
            "CapEff" => s.cap_eff = hex(v)?,
            "CapBnd" => s.cap_bnd = hex(v)?,
            "CapAmb" => s.cap_amb = hex(v)?,
            "NoNewPrivs" => s.no_new_privs = v.parse().unwrap_or(0),
            "Seccomp" => s.seccomp = v.parse().unwrap_or(0),
            "THP_enabled" => s.thp_enabled = Some(v == "1"),
            "VmSize" => {
                let kb = v.strip_suffix("kB").unwrap_or(v).trim();
                s.vm_size = Some(kb.parse::<u64>().map_err(|_| field(v))? << 10);
            }
            "Umask" => s.umask = Some(u32::from_str_radix(v, 8).map_err(|_| field(v))?),
            _ => {}
        }
    }
    Ok(s)
}

pub fn status(pid: i32) -> Result<Status> {
    parse_status(pid, &read_small(pid, "status")?)
}

pub fn thread_status(pid: i32, tid: i32) -> Result<Status> {
    parse_status(tid, &read_small(pid, &format!("task/{tid}/status"))?)
}

/// /proc/PID/limits as (soft, hard) pairs in RLIMIT_* order; "unlimited"
/// is all ones, as the kernel's RLIM_INFINITY.
pub fn parse_limits(pid: i32, text: &str) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        // "Max cpu time              unlimited            unlimited            seconds"
        if line.len() < 26 {
            continue;
        }
        let rest: Vec<&str> = line[26..].split_whitespace().collect();
        let bad_line = || bad(pid, "limits", ProcFault::Line(line.to_string()));
        if rest.len() < 2 {
            return Err(bad_line());
        }
        let v = |s: &str| -> Result<u64> {
            if s == "unlimited" {
                Ok(u64::MAX)
            } else {
                s.parse().map_err(|_| bad_line())
            }
        };
        out.push((v(rest[0])?, v(rest[1])?));
    }
    if out.len() != 16 {
        return Err(bad(pid, "limits", ProcFault::LimitCount(out.len())));
    }
    Ok(out)
}

pub fn limits(pid: i32) -> Result<Vec<(u64, u64)>> {
    parse_limits(pid, &read_small(pid, "limits")?)
}

/// Thread ids of a process, sorted with the leader first.
pub fn tasks(pid: i32) -> Result<Vec<i32>> {
    let mut v =
        crate::sys::procfs::tids(pid).map_err(|source| DumpError::Threads { pid, source })?;
    v.sort_by_key(|&t| (t != pid, t));
    Ok(v)
}

/// /proc/PID/auxv as words, as CRIU keeps them (at most AT_VECTOR_SIZE = 44).
pub fn auxv(pid: i32) -> Result<Vec<u64>> {
    let b = read(pid, "auxv")?;
    let mut v: Vec<u64> = b
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    v.truncate(44);
    Ok(v)
}

/// The inode of a namespace link (/proc/PID/ns/NAME), 0 if absent.
pub fn ns_ino(pid: i32, name: &str) -> u64 {
    let p = path(pid, &format!("ns/{name}"));
    match std::fs::read_link(&p) {
        Ok(l) => {
            let s = l.to_string_lossy();
            s.rsplit('[')
                .next()
                .and_then(|x| x.trim_end_matches(']').parse().ok())
                .unwrap_or(0)
        }
        Err(_) => 0,
    }
}

pub fn read_u32_file(pid: i32, what: &'static str) -> Result<i64> {
    let s = read_small(pid, what)?;
    s.trim()
        .parse::<i64>()
        .map_err(|_| bad(pid, what, ProcFault::NotNumber(s.clone())))
}

/// A field "key:\tvalue" of /proc/PID/fdinfo/FD.
pub fn fdinfo_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|r| r.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_no_longer_lives() {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id() as i32;
        let start = stat(pid).unwrap().start_time;
        // Not reaped: a zombie with the same pid and start time.
        while stat(pid).unwrap().state != 'Z' {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!still_lives(pid, start));
        let me = std::process::id() as i32;
        assert!(still_lives(me, stat(me).unwrap().start_time));
        assert!(!still_lives(me, stat(me).unwrap().start_time + 1));
        c.wait().unwrap();
        assert!(!still_lives(pid, start));
    }

    #[test]
    fn stat_with_spaces_in_comm() {
        let t = "123 (a b) c) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 18446744073709551615 \
                 4096 8192 140000 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 12288 16384 20480 30000 30010 30010 30020 0\n";
        let s = parse_stat(123, t).unwrap();
        assert_eq!(s.comm, "a b) c");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.start_code, 4096);
        assert_eq!(s.end_code, 8192);
        assert_eq!(s.start_stack, 140000);
        assert_eq!(s.start_data, 12288);
        assert_eq!(s.start_brk, 20480);
        assert_eq!(s.env_end, 30020);
        assert_eq!(s.exit_code, 0);
    }

    #[test]
    fn limits_parse() {
        let t = std::fs::read_to_string("/proc/self/limits").unwrap();
        let l = parse_limits(0, &t).unwrap();
        assert_eq!(l.len(), 16);
    }

    #[test]
    fn faults_name_the_file_and_what_is_wrong() {
        let e = parse_stat(5, "5 (x) S").unwrap_err();
        assert!(matches!(
            e,
            Error::Dump(DumpError::ProcParse {
                pid: 5,
                file: "stat",
                fault: ProcFault::FieldMissing(4)
            })
        ));
        let e = parse_limits(6, "header\n").unwrap_err();
        assert!(matches!(
            e,
            Error::Dump(DumpError::ProcParse {
                pid: 6,
                file: "limits",
                fault: ProcFault::LimitCount(0)
            })
        ));
        let e = parse_status(7, "Uid:\t0 0 0\n").unwrap_err();
        assert!(matches!(
            e,
            Error::Dump(DumpError::ProcParse { pid: 7, file: "status", fault: ProcFault::Field { ref key, .. } }) if key == "Uid"
        ));
    }

    #[test]
    fn failed_reads_keep_the_errno() {
        // No process has this pid (above pid_max).
        let e = read(i32::MAX, "stat").unwrap_err();
        let Error::Dump(DumpError::Proc { pid, source, .. }) = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*pid, i32::MAX);
        assert_eq!(crate::sys::errno_of(source), Some(libc::ENOENT));
        assert_eq!(
            e.to_string(),
            format!("pid {0}: /proc/{0}/stat: {source}", i32::MAX)
        );
    }
}
