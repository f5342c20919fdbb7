//! POSIX timers (`timer_create`): each comes back with its id, clock,
//! notification and value.
//!
//! The task holds timer ids in its memory, so they must match. Linux 6.17+
//! has `PR_TIMER_CREATE_RESTORE_IDS`, with which timer_create takes the id
//! to use; on older kernels ids come in order from 0, and the gaps are
//! filled with timers deleted at once (CRIU does the same). Timers are
//! created after the threads (a SIGEV_THREAD_ID timer names one) and armed
//! last, so their remaining time is spent as little as possible in crit.

use super::error::{TaskError, TimerFault};
use super::remote::{call, Tracee};
use crate::error::{Error, Result};
use crate::image::pb;

const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const RESTORE_IDS_OFF: u64 = 0;
const RESTORE_IDS_ON: u64 = 1;
const SIGEV_SIGNAL: u32 = 0;
const SIGEV_NONE: u32 = 1;
const SIGEV_THREAD: u32 = 2;
const SIGEV_THREAD_ID: u32 = 4;

/// Checks the timers of task `pid` (threads `tids`) before anything is
/// created, and returns them sorted by id.
pub fn checked(
    pid: u32,
    tids: &[u32],
    timers: &[pb::PosixTimerEntry],
) -> Result<Vec<pb::PosixTimerEntry>> {
    let mut v = timers.to_vec();
    v.sort_by_key(|t| t.it_id);
    for (i, t) in v.iter().enumerate() {
        let bad = |why| -> Error {
            TaskError::Timer {
                pid,
                id: t.it_id,
                why,
            }
            .into()
        };
        if i > 0 && v[i - 1].it_id == t.it_id {
            return Err(bad(TimerFault::Twice));
        }
        if t.it_id > i32::MAX as u32 {
            return Err(bad(TimerFault::IdRange));
        }
        match t.it_sigev_notify {
            SIGEV_SIGNAL | SIGEV_NONE | SIGEV_THREAD => {}
            n if n == SIGEV_SIGNAL | SIGEV_THREAD_ID => {
                let tid = t.notify_thread_id.unwrap_or(0);
                if tid <= 0 || !tids.contains(&(tid as u32)) {
                    return Err(bad(TimerFault::NotOurThread(tid)));
                }
            }
            n => return Err(bad(TimerFault::Notify(n))),
        }
        if t.it_sigev_notify != SIGEV_NONE && !(1..=64).contains(&t.si_signo) {
            return Err(bad(TimerFault::Signal(t.si_signo)));
        }
        if t.insec >= 1_000_000_000 || t.vnsec >= 1_000_000_000 {
            return Err(bad(TimerFault::Nanos));
        }
    }
    Ok(v)
}

/// Creates the timers (sorted by id, as [`checked`] returns them) in the
/// task of the stopped thread `t`; `area` is 128 writable bytes there.
pub fn create(t: &mut dyn Tracee, timers: &[pb::PosixTimerEntry], area: u64) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let pid = t.tid();
    // EINVAL: the kernel predates PR_TIMER_CREATE_RESTORE_IDS.
    let on = match t.syscall(
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0, 0],
    )? {
        0 => true,
        r if r == -(libc::EINVAL as i64) => false,
        r => {
            return Err(TaskError::Injected {
                pid,
                call: "prctl(PR_TIMER_CREATE_RESTORE_IDS)".into(),
                source: std::io::Error::from_raw_os_error(-r as i32),
            }
            .into())
        }
    };
    let id_at = area + 64;
    let mut next = 0u32;
    for tm in timers {
        // struct sigevent: value, signo, notify, then the thread id.
        let mut ev = [0u8; 64];
        ev[..8].copy_from_slice(&tm.sival_ptr.to_le_bytes());
        ev[8..12].copy_from_slice(&tm.si_signo.to_le_bytes());
        ev[12..16].copy_from_slice(&tm.it_sigev_notify.to_le_bytes());
        ev[16..20].copy_from_slice(&tm.notify_thread_id.unwrap_or(0).to_le_bytes());
        t.write_mem(&[(area, &ev), (id_at, &tm.it_id.to_le_bytes())])?;
        let what = format!("timer_create (timer {})", tm.it_id);
        if on {
            call(
                t,
                &what,
                libc::SYS_timer_create,
                [u64::from(tm.clock_id), area, id_at, 0, 0, 0],
            )?;
            let got = read_id(t, id_at)?;
            if got != tm.it_id {
                return Err(TaskError::TimerMoved {
                    pid,
                    id: tm.it_id,
                    got,
                }
                .into());
            }
            continue;
        }
        loop {
            call(
                t,
                &what,
                libc::SYS_timer_create,
                [u64::from(tm.clock_id), area, id_at, 0, 0, 0],
            )?;
            let got = read_id(t, id_at)?;
            if got != next {
                return Err(TaskError::TimerOrder {
                    pid,
                    id: tm.it_id,
                    got,
                    due: next,
                }
                .into());
            }
            next += 1;
            if got == tm.it_id {
                break;
            }
            call(
                t,
                "timer_delete (gap filler)",
                libc::SYS_timer_delete,
                [u64::from(got), 0, 0, 0, 0, 0],
            )?;
        }
    }
    if on {
        call(
            t,
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)",
            libc::SYS_prctl,
            [PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Arms the timers with their dumped interval and remaining time.
pub fn arm(t: &mut dyn Tracee, timers: &[pb::PosixTimerEntry], area: u64) -> Result<()> {
    for tm in timers {
        if tm.vsec == 0 && tm.vnsec == 0 {
            continue; // disarmed: nothing to set
        }
        let mut its = Vec::with_capacity(32);
        for v in [tm.isec, tm.insec, tm.vsec, tm.vnsec] {
            its.extend_from_slice(&v.to_le_bytes());
        }
        t.write_mem(&[(area, &its)])?;
        call(
            t,
            &format!("timer_settime (timer {})", tm.it_id),
            libc::SYS_timer_settime,
            [u64::from(tm.it_id), 0, area, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Reads back the id timer_create stored.
fn read_id(t: &mut dyn Tracee, at: u64) -> Result<u32> {
    let mut b = [0u8; 4];
    t.read_mem(at, &mut b)?;
    Ok(u32::from_le_bytes(b))
}
