//! Syscall injection into real, frozen processes.

mod kit;

use std::process::Command;
use std::time::Duration;

use crit::dump::freezer;
use crit::sys::inject::{self, ITimerVal, Injector, KSigaction, TimeVal};
use crit::sys::{procfs, ptrace, remote};
use kit::sys::*;

fn sleeper() -> Proc {
    let p = Proc::spawn(Command::new("sleep").arg("1000"));
    assert!(wait_until(|| state(p.pid, p.pid) == Some('S')));
    p
}

fn same_regs(a: &ptrace::Regs, b: &ptrace::Regs) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn getpid_and_gettid_and_exact_register_restore() {
    let (p, addr) = spinner(2);
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    for (_, t) in frozen.threads() {
        let before = ptrace::get_regs(t.tid).unwrap();
        let mask = ptrace::get_sigmask(t.tid).unwrap();
        let mut inj = Injector::new(t.tid).unwrap();
        assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
        assert_eq!(inj.syscall(libc::SYS_gettid, [0; 6]).unwrap(), t.tid as i64);
        // A failing call returns -errno.
        assert_eq!(
            inj.syscall(libc::SYS_close, [9999, 0, 0, 0, 0, 0]).unwrap(),
            -(libc::EBADF as i64)
        );
        inj.finish().unwrap();
        same_regs(&before, &ptrace::get_regs(t.tid).unwrap());
        assert_eq!(ptrace::get_sigmask(t.tid).unwrap(), mask);
        assert_eq!(ptrace::stop_kind(t.tid).unwrap(), ptrace::Stop::Interrupt);
    }
    let now = counters(p.pid, addr, 3);
    frozen.resume().unwrap();
    assert!(all_counters_move(p.pid, addr, &now));
}

#[test]
fn drop_restores_like_finish() {
    let p = sleeper();
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let before = ptrace::get_regs(p.pid).unwrap();
    let scratch;
    {
        let mut inj = Injector::with_scratch(p.pid, 100, None).unwrap();
        scratch = inj.scratch().unwrap();
        assert!(scratch.1 >= 100);
        assert!(procfs::maps(p.pid)
            .unwrap()
            .iter()
            .any(|m| m.start <= scratch.0 && scratch.0 + scratch.1 as u64 <= m.end));
        assert_eq!(
            inj.syscall(libc::SYS_getppid, [0; 6]).unwrap(),
            std::process::id() as i64
        );
    }
    same_regs(&before, &ptrace::get_regs(p.pid).unwrap());
    assert!(!procfs::maps(p.pid)
        .unwrap()
        .iter()
        .any(|m| m.start <= scratch.0 && scratch.0 < m.end));
    frozen.resume().unwrap();
    assert!(wait_until(|| state(p.pid, p.pid) == Some('S')));
}

#[test]
fn the_gate_is_found_in_the_vdso_with_a_hint_without_one_and_despite_a_wrong_one() {
    let p = sleeper();
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let maps = procfs::maps(p.pid).unwrap();
    let v = maps.iter().find(|m| m.name == "[vdso]").unwrap();
    // Right, unreadable, none.
    for hint in [Some((v.start, v.end)), Some((0x1000, 0x3000)), None] {
        let mut inj = Injector::with_scratch(p.pid, 100, hint).unwrap();
        assert!(v.start <= inj.gate() && inj.gate() < v.end, "{hint:x?}");
        assert_eq!(
            inj.syscall(libc::SYS_getppid, [0; 6]).unwrap(),
            std::process::id() as i64
        );
        let r = inj.syscalls(&[(libc::SYS_getppid, [0; 6]); 8]).unwrap();
        assert_eq!(r, vec![std::process::id() as i64; 8]);
        inj.finish().unwrap();
    }
    // Nothing of the injections is left.
    assert_eq!(procfs::maps(p.pid).unwrap(), maps);
    frozen.resume().unwrap();
    assert!(wait_until(|| state(p.pid, p.pid) == Some('S')));
}

#[test]
fn mmap_then_write_and_read_back() {
    let p = sleeper();
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let mut inj = Injector::new(p.pid).unwrap();
    let len = 3 * 4096u64;
    let a = inj
        .remote_mmap(
            0,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    let maps = procfs::maps(p.pid).unwrap();
    let m = maps
        .iter()
        .find(|m| m.start <= a && a < m.end)
        .expect("new mapping listed");
    assert!(m.end >= a + len && m.perms.starts_with("rw"));

    let pattern: Vec<u8> = (0..len as usize).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(remote::write(p.pid, a, &pattern).unwrap(), pattern.len());
    let mut back = vec![0u8; pattern.len()];
    assert_eq!(remote::read(p.pid, a, &mut back).unwrap(), back.len());
    assert_eq!(back, pattern);

    // mprotect read-only: process_vm_writev cannot write, /proc/PID/mem can.
    inj.remote_mprotect(a, 4096, libc::PROT_READ).unwrap();
    assert!(remote::write(p.pid, a, b"x").is_err());
    remote::mem_write(p.pid, a, b"XY").unwrap();
    let mut two = [0u8; 2];
    remote::read_exact(p.pid, a, &mut two).unwrap();
    assert_eq!(&two, b"XY");

    // mremap (of one whole VMA again) grows it elsewhere; munmap removes it.
    inj.remote_mprotect(a, 4096, libc::PROT_READ | libc::PROT_WRITE)
        .unwrap();
    let b = inj
        .remote_mremap(a, len, 2 * len, libc::MREMAP_MAYMOVE, 0)
        .unwrap();
    let mut tail = [0u8; 16];
    remote::read_exact(p.pid, b + len - 16, &mut tail).unwrap();
    assert_eq!(&tail[..], &pattern[len as usize - 16..]);
    inj.remote_munmap(b, 2 * len).unwrap();
    assert!(remote::read(p.pid, b, &mut two).is_err());
    // Errors carry errno and name the tid.
    let e = inj.remote_munmap(1, 4096).unwrap_err();
    assert_eq!(crit::sys::errno_of(&e), Some(libc::EINVAL));
    assert!(e.to_string().contains(&p.pid.to_string()), "{e}");
    inj.finish().unwrap();
    frozen.resume().unwrap();
}

#[test]
fn rt_sigaction_installs_and_reads_handlers() {
    let p = sleeper();
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    assert_eq!(status_mask(p.pid, "SigCgt") & usr1, 0);
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let mut inj = Injector::new(p.pid).unwrap();
    let new = KSigaction {
        handler: 0x1234_5000,
        flags: 0x0400_0000 | (libc::SA_RESTART | libc::SA_SIGINFO) as u64, // SA_RESTORER
        restorer: 0x1234_6000,
        mask: 1 << (libc::SIGUSR2 - 1),
    };
    let old = inj.remote_rt_sigaction(libc::SIGUSR1, Some(&new)).unwrap();
    assert_eq!(old.handler, 0, "SIG_DFL before");
    assert_ne!(
        status_mask(p.pid, "SigCgt") & usr1,
        0,
        "SigCgt shows the handler"
    );
    let now = inj.remote_rt_sigaction(libc::SIGUSR1, None).unwrap();
    assert_eq!(now, new);
    inj.remote_rt_sigaction(libc::SIGUSR1, Some(&old)).unwrap();
    assert_eq!(status_mask(p.pid, "SigCgt") & usr1, 0);
    inj.finish().unwrap();
    frozen.resume().unwrap();
}

#[test]
fn blocked_read_restarts_after_injection() {
    let mut p = Proc::program("reader", &[]);
    assert_eq!(p.line(), "ready");
    // Wait until it sleeps inside read(0, ...).
    assert!(wait_until(|| {
        state(p.pid, p.pid) == Some('S')
            && std::fs::read_to_string(format!("/proc/{}/syscall", p.pid))
                .is_ok_and(|s| s.starts_with("0 0x0 "))
    }));
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let before = ptrace::get_regs(p.pid).unwrap();
    let irq = ptrace::interrupted_syscall(&before).expect("frozen inside read");
    assert_eq!(irq.nr, libc::SYS_read as u64);
    assert_eq!(irq.restart, ptrace::ERESTARTSYS);

    let mut inj = Injector::new(p.pid).unwrap();
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    let a = inj
        .remote_mmap(
            0,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    inj.remote_munmap(a, 4096).unwrap();
    inj.finish().unwrap();
    same_regs(&before, &ptrace::get_regs(p.pid).unwrap());
    assert_eq!(ptrace::stop_kind(p.pid).unwrap(), ptrace::Stop::Interrupt);

    // Resumed with a plain PTRACE_CONT (no detach, which would also kick
    // the signal path): read() must restart, not return -ERESTARTSYS.
    ptrace::cont(p.pid, 0).unwrap();
    p.write_stdin(b"hello\n");
    assert_eq!(p.line(), "got: hello");

    // Back into read(); stop it there again, inject, and detach this time.
    assert!(wait_until(|| std::fs::read_to_string(format!(
        "/proc/{}/wchan",
        p.pid
    ))
    .is_ok_and(|w| w.contains("pipe_read") || w.contains("wait"))
        && state(p.pid, p.pid) == Some('S')));
    ptrace::interrupt(p.pid).unwrap();
    assert_eq!(ptrace::wait_stop(p.pid).unwrap(), ptrace::Stop::Interrupt);
    let mut inj = Injector::new(p.pid).unwrap();
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    inj.finish().unwrap();
    frozen.resume().unwrap();
    assert!(wait_until(|| untraced(p.pid)));
    p.write_stdin(b"again\n");
    assert_eq!(p.line(), "got: again");
}

#[test]
fn signals_sent_while_injecting_are_not_lost() {
    let mut p = Proc::program("reader", &[]);
    assert_eq!(p.line(), "ready");
    assert!(wait_until(|| state(p.pid, p.pid) == Some('S')));
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let mut inj = Injector::new(p.pid).unwrap();
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    // Sent in the middle of the injection session, and before it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(inj.syscall(libc::SYS_gettid, [0; 6]).unwrap(), p.pid as i64);
    }
    inj.finish().unwrap();
    // Still pending, not delivered while frozen.
    assert_ne!(
        status_mask(p.pid, "ShdPnd") | status_mask(p.pid, "SigPnd"),
        0
    );
    assert!(p.try_line(Duration::from_millis(20)).is_none());
    frozen.resume().unwrap();
    assert_eq!(p.line(), "usr1");
    // The read was restarted after the handler (SA_RESTART).
    p.write_stdin(b"after signal\n");
    assert_eq!(p.line(), "got: after signal");
}

#[test]
fn sigaltstack_itimers_prctl_arch_prctl_tid_address_robust_list() {
    let p = sleeper();
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let regs = ptrace::get_regs(p.pid).unwrap();
    let mut inj = Injector::new(p.pid).unwrap();

    let ss = inj.remote_sigaltstack(None).unwrap();
    assert_eq!(ss.flags, libc::SS_DISABLE);

    let t = ITimerVal {
        interval: TimeVal { sec: 0, usec: 0 },
        value: TimeVal { sec: 5000, usec: 0 },
    };
    let old = inj.remote_setitimer(libc::ITIMER_PROF, &t).unwrap();
    assert_eq!(old, ITimerVal::default());
    let got = inj.remote_getitimer(libc::ITIMER_PROF).unwrap();
    assert!(got.value.sec > 4990 && got.value.sec <= 5000, "{got:?}");
    inj.remote_setitimer(libc::ITIMER_PROF, &ITimerVal::default())
        .unwrap();
    assert_eq!(
        inj.remote_getitimer(libc::ITIMER_PROF).unwrap(),
        ITimerVal::default()
    );

    // prctl(PR_GET_NAME) into the scratch area.
    let buf = inj.ensure_scratch(64).unwrap();
    assert_eq!(
        inj.remote_prctl(libc::PR_GET_NAME, [buf, 0, 0, 0]).unwrap(),
        0
    );
    let mut name = [0u8; 16];
    inj.read_scratch(0, &mut name).unwrap();
    assert!(name.starts_with(b"sleep\0"), "{name:?}");

    // arch_prctl(ARCH_GET_FS) agrees with the registers.
    const ARCH_GET_FS: i32 = 0x1003;
    inj.remote_arch_prctl(ARCH_GET_FS, buf).unwrap();
    let mut fs = [0u8; 8];
    inj.read_scratch(0, &mut fs).unwrap();
    assert_eq!(u64::from_ne_bytes(fs), regs.fs_base);

    // glibc sets clear_child_tid and the robust list of every thread, in
    // its TLS block (near fs_base).
    let tid_addr = inj.remote_get_tid_address().unwrap();
    assert!(
        tid_addr != 0 && tid_addr.abs_diff(regs.fs_base) < 1 << 16,
        "{tid_addr:#x}"
    );
    let (head, len) = inject::get_robust_list(p.pid).unwrap();
    assert_eq!(len, 24);
    assert!(head.abs_diff(regs.fs_base) < 1 << 16, "{head:#x}");
    inj.finish().unwrap();
    frozen.resume().unwrap();
}

#[test]
fn own_gate_page() {
    let p = sleeper();
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let mut inj = Injector::new(p.pid).unwrap();
    let vdso_gate = inj.gate();
    let page = inj.map_gate_page(None).unwrap();
    assert_eq!(inj.gate(), page);
    assert_ne!(page, vdso_gate);
    let m = procfs::maps(p.pid).unwrap();
    assert!(m
        .iter()
        .any(|m| m.start == page && m.perms.starts_with("r-x")));
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    inj.finish().unwrap();
    assert!(!procfs::maps(p.pid).unwrap().iter().any(|m| m.start == page));
    frozen.resume().unwrap();
}

#[test]
fn refuses_threads_not_in_an_event_stop() {
    let p = sleeper();
    // Not traced at all.
    assert!(Injector::new(p.pid).is_err());
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    // In a syscall-exit stop: refused; to_event_stop brings it back.
    ptrace::cont_syscall(p.pid, 0).unwrap();
    // The restarted clock_nanosleep enters: syscall-entry stop.
    assert_eq!(ptrace::wait_stop(p.pid).unwrap(), ptrace::Stop::Syscall);
    let e = Injector::new(p.pid).unwrap_err().to_string();
    assert!(e.contains("to_event_stop"), "{e}");
    assert_eq!(
        ptrace::to_event_stop(p.pid).unwrap(),
        ptrace::Stop::Interrupt
    );
    let mut inj = Injector::new(p.pid).unwrap();
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    inj.finish().unwrap();
    frozen.resume().unwrap();
    assert!(wait_until(
        || untraced(p.pid) && state(p.pid, p.pid) == Some('S')
    ));
}

#[test]
fn without_vdso_the_gate_is_patched_at_rip_and_put_back() {
    let p = sleeper();
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let vdso = procfs::maps(p.pid)
        .unwrap()
        .into_iter()
        .find(|m| m.name == "[vdso]")
        .expect("vdso");
    // Unmap the vdso with a syscall run from the vdso itself (the last
    // call through a gate may remove it).
    let mut inj = Injector::new(p.pid).unwrap();
    assert!(vdso.start <= inj.gate() && inj.gate() < vdso.end);
    inj.remote_munmap(vdso.start, vdso.end - vdso.start)
        .unwrap();
    inj.finish().unwrap();
    assert!(!procfs::maps(p.pid)
        .unwrap()
        .iter()
        .any(|m| m.name == "[vdso]"));

    let rip = ptrace::get_regs(p.pid).unwrap().rip;
    let mut text = [0u8; 16];
    remote::mem_read(p.pid, rip, &mut text).unwrap();
    let mut inj = Injector::new(p.pid).unwrap();
    assert_eq!(inj.gate(), rip);
    let mut patched = [0u8; 2];
    remote::mem_read(p.pid, rip, &mut patched).unwrap();
    assert_eq!(patched, [0x0f, 0x05]);
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    inj.finish().unwrap();
    let mut after = [0u8; 16];
    remote::mem_read(p.pid, rip, &mut after).unwrap();
    assert_eq!(after, text);
    frozen.resume().unwrap();
    // sleep goes back into its (restarted) nanosleep.
    assert!(wait_until(
        || untraced(p.pid) && state(p.pid, p.pid) == Some('S')
    ));
}

/// Anonymous executable mappings of `pid` (the batch runner is one).
fn anon_exec(pid: i32) -> usize {
    procfs::maps(pid)
        .unwrap()
        .iter()
        .filter(|m| m.perms.as_bytes().get(2) == Some(&b'x') && m.name.is_empty())
        .count()
}

/// Runs getpid eight times through `syscalls` in a sleeper whose SIGTRAP
/// has `action` (and is blocked, if `blocked`); returns whether the calls
/// went through the batch runner. Checks the results, and that the
/// action, the mask and the registers are as before.
fn batch_with_sigtrap(action: u64, blocked: bool) -> bool {
    let p = sleeper();
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let trap = 1u64 << (libc::SIGTRAP - 1);
    let act = KSigaction {
        handler: action,
        flags: 0x0400_0000,
        restorer: 0x1234_6000,
        mask: 0,
    };
    let mut setup = Injector::new(p.pid).unwrap();
    setup
        .remote_rt_sigaction(libc::SIGTRAP, Some(&act))
        .unwrap();
    setup.finish().unwrap();
    let mask = ptrace::get_sigmask(p.pid).unwrap();
    let mask = if blocked { mask | trap } else { mask & !trap };
    ptrace::set_sigmask(p.pid, mask).unwrap();
    let before = ptrace::get_regs(p.pid).unwrap();
    let exec_before = anon_exec(p.pid);

    let mut inj = Injector::new(p.pid).unwrap();
    let got = inj.syscalls(&[(libc::SYS_getpid, [0; 6]); 8]).unwrap();
    assert_eq!(got, vec![p.pid as i64; 8]);
    let batched = anon_exec(p.pid) > exec_before;
    // A second run in the same injector, and a plain call after it.
    let got = inj
        .syscalls(&[(libc::SYS_close, [9999, 0, 0, 0, 0, 0]); 5])
        .unwrap();
    assert_eq!(got, vec![-(libc::EBADF as i64); 5]);
    assert_eq!(inj.syscall(libc::SYS_gettid, [0; 6]).unwrap(), p.pid as i64);
    let now = inj.remote_rt_sigaction(libc::SIGTRAP, None).unwrap();
    assert_eq!(now, act, "SIGTRAP's action is untouched");
    inj.finish().unwrap();

    assert_eq!(anon_exec(p.pid), exec_before, "the runner is unmapped");
    same_regs(&before, &ptrace::get_regs(p.pid).unwrap());
    assert_eq!(ptrace::get_sigmask(p.pid).unwrap(), mask);
    assert_eq!(
        status_mask(p.pid, "SigPnd") & trap,
        0,
        "no SIGTRAP left pending"
    );
    assert_eq!(
        status_mask(p.pid, "ShdPnd") & trap,
        0,
        "no SIGTRAP left pending"
    );
    frozen.resume().unwrap();
    batched
}

#[test]
fn batched_calls_leave_sigtrap_as_it_was() {
    assert!(
        batch_with_sigtrap(0x1234_5000, false),
        "a handler allows a run"
    );
    assert!(
        batch_with_sigtrap(0x1234_5000, true),
        "so does a blocked handler"
    );
    assert!(batch_with_sigtrap(0, true), "and SIG_DFL");
    // force_sig would reset an ignored SIGTRAP: the calls go one by one.
    assert!(
        !batch_with_sigtrap(1, false),
        "an ignored SIGTRAP means no run"
    );
}
