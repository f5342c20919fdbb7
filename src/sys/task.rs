//! Per-thread facts another process may read without ptrace tricks:
//! robust futex list, nice value, scheduling policy.

use nix::libc;

/// The robust futex list head and its length of thread `tid`
/// (get_robust_list(2); needs ptrace access to the thread).
pub fn robust_list(tid: i32) -> std::io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: the kernel writes one pointer-sized value to each of the two
    // out-parameters, which point to live locals of the right size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid as libc::c_long,
            &mut head as *mut u64,
            &mut len as *mut libc::size_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((head, len as u64))
}

/// The nice value of thread `tid` (getpriority(PRIO_PROCESS, tid)).
pub fn nice(tid: i32) -> std::io::Result<i32> {
    // getpriority returns 20 - nice as a raw syscall, never negative.
    // SAFETY: integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getpriority,
            libc::PRIO_PROCESS as libc::c_long,
            tid as libc::c_long,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(20 - r as i32)
}

/// The scheduling policy of thread `tid` (sched_getscheduler(2)).
pub fn sched_policy(tid: i32) -> std::io::Result<u32> {
    // SAFETY: integer argument only.
    let r = unsafe { libc::sched_getscheduler(tid) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as u32)
}

/// The static priority of thread `tid` (sched_getparam(2)).
pub fn sched_prio(tid: i32) -> std::io::Result<u32> {
    let mut p = libc::sched_param { sched_priority: 0 };
    // SAFETY: the kernel fills the sched_param we pass by pointer.
    let r = unsafe { libc::sched_getparam(tid, &mut p) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.sched_priority as u32)
}

/// Sets the calling thread's nice value (a lower one needs CAP_SYS_NICE
/// or a nice limit that allows it).
pub fn set_own_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: integer arguments only; 0 names the calling thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_setpriority,
            libc::PRIO_PROCESS as libc::c_long,
            0,
            nice as libc::c_long,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the calling thread yield the CPUs to everything else that runs
/// (nice 19): for background work that must not slow what waits on it.
pub fn yield_to_others() -> std::io::Result<()> {
    set_own_nice(19)
}
