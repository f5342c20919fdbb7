//! Resource limits, set from inside the task. Another machine may allow
//! less than the one the tree was dumped on (RLIMIT_NPROC's default
//! follows its memory; raising a hard limit needs CAP_SYS_RESOURCE, and
//! RLIMIT_NOFILE stops at fs.nr_open). CRIU 4.2 ignores such a failure;
//! crit lowers the limit to what is allowed (the hard one to the task's
//! current hard limit, the soft one under it) and reports each lowered
//! limit, so the caller can warn once per task.

use super::error::TaskError;
use super::remote::{call, Tracee};
use crate::error::Result;
use crate::image::pb;

const NR_PRLIMIT64: i64 = libc::SYS_prlimit64;
const EPERM: i64 = 1;

/// Names of the limits, by resource number.
const NAMES: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// A limit restored lower than recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lowered {
    pub resource: usize,
    /// (soft, hard) as recorded and as set.
    pub recorded: (u64, u64),
    pub restored: (u64, u64),
}

pub(crate) fn value(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

impl std::fmt::Display for Lowered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = NAMES
            .get(self.resource)
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("limit {}", self.resource));
        write!(
            f,
            "{name} {}/{} -> {}/{}",
            value(self.recorded.0),
            value(self.recorded.1),
            value(self.restored.0),
            value(self.restored.1)
        )
    }
}

/// Sets every recorded limit in the task; `buf` is 16 bytes per limit
/// (and at least 32) of scratch memory in it. Every limit is tried at
/// once (one batch); those this machine does not allow are lowered one
/// by one. Returns the limits that had to be lowered.
pub fn restore(t: &mut dyn Tracee, rl: &pb::TaskRlimitsEntry, buf: u64) -> Result<Vec<Lowered>> {
    let mut all = Vec::with_capacity(rl.rlimits.len() * 16);
    let mut calls = Vec::with_capacity(rl.rlimits.len());
    for (res, r) in rl.rlimits.iter().enumerate() {
        if r.cur > r.max {
            return Err(TaskError::Rlimit {
                pid: t.tid(),
                name: NAMES.get(res).copied().unwrap_or("limit"),
                cur: r.cur,
                max: r.max,
            }
            .into());
        }
        let at = buf + all.len() as u64;
        all.extend_from_slice(&r.cur.to_le_bytes());
        all.extend_from_slice(&r.max.to_le_bytes());
        calls.push((NR_PRLIMIT64, [0, res as u64, at, 0, 0, 0]));
    }
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    t.write_mem(&[(buf, &all)])?;
    let got = t.batch(&calls)?;
    let mut lowered = Vec::new();
    for (res, (r, got)) in rl.rlimits.iter().zip(got).enumerate() {
        let name = NAMES.get(res).copied().unwrap_or("limit");
        if got == 0 {
            continue;
        }
        if got != -EPERM {
            call_failed(t, name, got)?;
        }
        lowered.push(lower(t, res, r, buf)?);
    }
    Ok(lowered)
}

/// Limit `res` could not be set as recorded (a hard limit above the
/// current one needs CAP_SYS_RESOURCE): keeps the current hard limit and
/// the soft one under it.
fn lower(t: &mut dyn Tracee, res: usize, r: &pb::RlimitEntry, buf: u64) -> Result<Lowered> {
    let name = NAMES.get(res).copied().unwrap_or("limit");
    let old = buf + 16;
    call(
        t,
        &format!("prlimit64({name}) read"),
        NR_PRLIMIT64,
        [0, res as u64, 0, old, 0, 0],
    )?;
    let mut b = [0u8; 16];
    t.read_mem(old, &mut b)?;
    let cur_max = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
    let max = r.max.min(cur_max);
    let cur = r.cur.min(max);
    put(t, buf, cur, max)?;
    call(
        t,
        &format!("prlimit64({name})"),
        NR_PRLIMIT64,
        [0, res as u64, buf, 0, 0, 0],
    )?;
    Ok(Lowered {
        resource: res,
        recorded: (r.cur, r.max),
        restored: (cur, max),
    })
}

fn put(t: &mut dyn Tracee, buf: u64, cur: u64, max: u64) -> Result<()> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&cur.to_le_bytes());
    b[8..].copy_from_slice(&max.to_le_bytes());
    t.write_mem(&[(buf, &b)])
}

fn call_failed(t: &mut dyn Tracee, name: &str, r: i64) -> Result<()> {
    Err(TaskError::Injected {
        pid: t.tid(),
        call: format!("prlimit64({name})"),
        source: std::io::Error::from_raw_os_error(-r as i32),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A task whose hard limits cannot be raised, as without
    /// CAP_SYS_RESOURCE.
    struct Fake {
        mem: HashMap<u64, u8>,
        limits: Vec<(u64, u64)>,
    }

    impl Tracee for Fake {
        fn tid(&self) -> u32 {
            42
        }
        fn syscall(&mut self, nr: i64, a: [u64; 6]) -> Result<i64> {
            assert_eq!(nr, NR_PRLIMIT64);
            let res = a[1] as usize;
            if a[3] != 0 {
                let (c, m) = self.limits[res];
                let mut b = c.to_le_bytes().to_vec();
                b.extend_from_slice(&m.to_le_bytes());
                self.write_mem(&[(a[3], &b)])?;
            }
            if a[2] != 0 {
                let mut b = [0u8; 16];
                self.read_mem(a[2], &mut b)?;
                let c = u64::from_le_bytes(b[..8].try_into().unwrap());
                let m = u64::from_le_bytes(b[8..].try_into().unwrap());
                if m > self.limits[res].1 {
                    return Ok(-EPERM);
                }
                self.limits[res] = (c, m);
            }
            Ok(0)
        }
        fn write_mem(&mut self, iov: &[(u64, &[u8])]) -> Result<()> {
            for (a, b) in iov {
                for (i, x) in b.iter().enumerate() {
                    self.mem.insert(a + i as u64, *x);
                }
            }
            Ok(())
        }
        fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> Result<()> {
            for (i, x) in buf.iter_mut().enumerate() {
                *x = self.mem.get(&(addr + i as u64)).copied().unwrap_or(0);
            }
            Ok(())
        }
    }

    fn rl(v: &[(u64, u64)]) -> pb::TaskRlimitsEntry {
        pb::TaskRlimitsEntry {
            rlimits: v
                .iter()
                .map(|&(cur, max)| pb::RlimitEntry { cur, max })
                .collect(),
        }
    }

    #[test]
    fn limits_above_the_hard_one_are_lowered_and_reported() {
        let mut t = Fake {
            mem: HashMap::new(),
            limits: vec![(100, 1000); 8],
        };
        let mut want = vec![(10, 20); 8];
        want[6] = (2000, 2000); // soft and hard too high
        want[7] = (500, u64::MAX); // hard too high, soft fits
        let low = restore(&mut t, &rl(&want), 0x1000).unwrap();
        assert_eq!(low.len(), 2);
        assert_eq!(low[0].restored, (1000, 1000));
        assert_eq!(low[1].restored, (500, 1000));
        assert_eq!(t.limits[6], (1000, 1000));
        assert_eq!(t.limits[7], (500, 1000));
        assert_eq!(t.limits[0], (10, 20));
        assert_eq!(
            low[1].to_string(),
            "RLIMIT_NOFILE 500/unlimited -> 500/1000"
        );
    }

    #[test]
    fn soft_above_hard_in_the_images_is_refused() {
        let mut t = Fake {
            mem: HashMap::new(),
            limits: vec![(100, 1000); 2],
        };
        let e = restore(&mut t, &rl(&[(10, 20), (30, 20)]), 0x1000).unwrap_err();
        let crate::error::Error::Restore(r) = e else {
            panic!("not a restore error: {e}");
        };
        assert!(
            matches!(
                *r,
                crate::restore::error::RestoreError::Task(
                    crate::restore::error::TaskError::Rlimit {
                        name: "RLIMIT_FSIZE",
                        cur: 30,
                        max: 20,
                        ..
                    }
                )
            ),
            "{r}"
        );
    }
}
