//! Seccomp: each thread gets back its mode and its chain of filters
//! (`seccomp.img`, indexed from the thread's core).
//!
//! A thread's core names one filter; that filter and the ones its `prev`
//! links lead to are the thread's chain, in the order they were installed
//! (CRIU writes and reads the chain this way). The filters go in before
//! the credentials, while the task is still root: the kernel wants
//! CAP_SYS_ADMIN or no_new_privs for them. `PTRACE_O_SUSPEND_SECCOMP` is
//! set on the thread first, so the filters do not see the calls crit
//! still injects after them; they apply from the moment it is detached.

use super::error::{SeccompFault, TaskError};
use super::remote::{call, Tracee};
use super::tracee::SysTracee;
use crate::error::{Error, Result};
use crate::image::pb;

/// What a thread runs under.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Setup {
    #[default]
    None,
    /// SECCOMP_MODE_STRICT.
    Strict,
    /// SECCOMP_MODE_FILTER: filters in installation order.
    Filters(Vec<Filter>),
}

/// One classic BPF program (8 bytes per instruction) and its
/// SECCOMP_FILTER_FLAG_* flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub prog: Vec<u8>,
    pub flags: u32,
}

/// BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;
/// SECCOMP_FILTER_FLAG_NEW_LISTENER: would hand an fd to a supervisor
/// that is not part of the dump.
const FLAG_NEW_LISTENER: u32 = 8;

/// Works out a thread's setup from its mode and filter index and
/// `seccomp.img` (None if the directory has none). Checks the chain here,
/// before anything is created.
pub fn setup_of(
    tid: u32,
    mode: u32,
    index: Option<u32>,
    img: Option<&pb::SeccompEntry>,
) -> Result<Setup> {
    match mode {
        0 => return Ok(Setup::None),
        1 => return Ok(Setup::Strict),
        2 => {}
        m => return Err(TaskError::SeccompMode { tid, mode: m }.into()),
    }
    let bad = |why| -> Error { TaskError::Seccomp { tid, why }.into() };
    let img = img.ok_or_else(|| bad(SeccompFault::Missing))?;
    let all = &img.seccomp_filters;
    let mut at = index.ok_or_else(|| bad(SeccompFault::NoIndex))?;
    let mut chain = Vec::new();
    loop {
        let f = all.get(at as usize).ok_or_else(|| {
            bad(SeccompFault::NoFilter {
                at,
                entries: all.len(),
            })
        })?;
        if f.filter.is_empty() || f.filter.len() % 8 != 0 || f.filter.len() / 8 > MAX_INSNS {
            return Err(bad(SeccompFault::Size {
                at,
                len: f.filter.len(),
                max: MAX_INSNS,
            }));
        }
        let flags = f.flags.unwrap_or(0);
        if flags & FLAG_NEW_LISTENER != 0 {
            return Err(bad(SeccompFault::Listener { at }));
        }
        chain.push(Filter {
            prog: f.filter.clone(),
            flags,
        });
        match f.prev {
            Some(p) if chain.len() > all.len() => {
                return Err(bad(SeccompFault::Loop { at: p }));
            }
            Some(p) => at = p,
            None => break,
        }
    }
    Ok(Setup::Filters(chain))
}

/// Puts `setup` on the stopped thread `t`. `area` is writable memory of
/// the task with room for the largest filter plus 16 bytes. Every thread
/// of the task must have had [`SysTracee::suspend_seccomp`] first: a
/// filter with SECCOMP_FILTER_FLAG_TSYNC reaches them all.
pub fn install(t: &mut SysTracee, setup: &Setup, area: u64) -> Result<()> {
    match setup {
        Setup::None => Ok(()),
        Setup::Strict => {
            call(
                t,
                "prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)",
                libc::SYS_prctl,
                [libc::PR_SET_SECCOMP as u64, 1, 0, 0, 0, 0],
            )?;
            Ok(())
        }
        Setup::Filters(chain) => {
            for (i, f) in chain.iter().enumerate() {
                // struct sock_fprog { u16 len; u64 filter; }, then the code.
                let code = area + 16;
                let mut fprog = [0u8; 16];
                fprog[..2].copy_from_slice(&((f.prog.len() / 8) as u16).to_le_bytes());
                fprog[8..].copy_from_slice(&code.to_le_bytes());
                t.write_mem(&[(area, &fprog), (code, &f.prog)])?;
                call(
                    t,
                    &format!(
                        "seccomp(SECCOMP_SET_MODE_FILTER) of filter {i} (flags {:#x})",
                        f.flags
                    ),
                    libc::SYS_seccomp,
                    [1, u64::from(f.flags), area, 0, 0, 0],
                )?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filt(len: usize, prev: Option<u32>) -> pb::SeccompFilter {
        pb::SeccompFilter {
            filter: vec![0; len],
            prev,
            flags: None,
        }
    }

    #[test]
    fn chains_follow_prev_from_the_threads_filter() {
        let img = pb::SeccompEntry {
            seccomp_filters: vec![filt(24, None), filt(8, Some(0))],
        };
        let s = setup_of(7, 2, Some(1), Some(&img)).unwrap();
        let Setup::Filters(c) = s else {
            panic!("{s:?}")
        };
        assert_eq!(c.iter().map(|f| f.prog.len()).collect::<Vec<_>>(), [8, 24]);
        assert_eq!(setup_of(7, 0, None, None).unwrap(), Setup::None);
        assert_eq!(setup_of(7, 1, None, None).unwrap(), Setup::Strict);
    }

    #[test]
    fn broken_chains_are_refused() {
        let looped = pb::SeccompEntry {
            seccomp_filters: vec![filt(8, Some(1)), filt(8, Some(0))],
        };
        use crate::error::Error;
        use crate::restore::error::{RestoreError, SeccompFault as F, TaskError};
        // The task error inside the library's error, or None.
        let task = |e: Error| match e {
            Error::Restore(r) => match *r {
                RestoreError::Task(t) => Some(t),
                _ => None,
            },
            _ => None,
        };
        let why = |e: Error| match task(e) {
            Some(TaskError::Seccomp { tid: 7, why }) => Some(why),
            _ => None,
        };
        let e = setup_of(7, 2, Some(0), Some(&looped)).unwrap_err();
        assert!(matches!(why(e), Some(F::Loop { .. })));
        let short = pb::SeccompEntry {
            seccomp_filters: vec![filt(12, None)],
        };
        let e = setup_of(7, 2, Some(0), Some(&short)).unwrap_err();
        assert!(matches!(why(e), Some(F::Size { at: 0, len: 12, .. })));
        let e = setup_of(7, 2, Some(3), Some(&short)).unwrap_err();
        assert!(matches!(why(e), Some(F::NoFilter { at: 3, entries: 1 })));
        let e = setup_of(7, 2, Some(0), None).unwrap_err();
        assert!(matches!(why(e), Some(F::Missing)));
        let e = setup_of(7, 5, None, None).unwrap_err();
        assert!(matches!(
            task(e),
            Some(TaskError::SeccompMode { tid: 7, mode: 5 })
        ));
    }
}
