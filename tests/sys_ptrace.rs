//! Stop states and register access, on real processes.

mod kit;

use std::process::Command;

use crit::dump::freezer;
use crit::sys::inject::Injector;
use crit::sys::ptrace::{self, Stop};
use kit::sys::*;

#[test]
fn registers_and_thread_state() {
    let p = Proc::spawn(Command::new("sleep").arg("1000"));
    assert!(wait_until(|| state(p.pid, p.pid) == Some('S')));
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let tid = p.pid;

    // A thread frozen in clock_nanosleep: an interrupted, restartable call.
    let regs = ptrace::get_regs(tid).unwrap();
    let irq = ptrace::interrupted_syscall(&regs).expect("sleep is inside a syscall");
    assert_eq!(irq.nr, libc::SYS_clock_nanosleep as u64);
    assert_eq!(irq.restart, ptrace::ERESTART_RESTARTBLOCK);
    assert_eq!(
        ptrace::get_syscall_info(tid).unwrap().op,
        ptrace::SyscallOp::None
    );
    assert_eq!(ptrace::stop_kind(tid).unwrap(), Stop::Interrupt);
    ptrace::set_regs(tid, &regs).unwrap();
    let again = ptrace::get_regs(tid).unwrap();
    assert_eq!(
        (again.rip, again.rsp, again.rax, again.orig_rax),
        (regs.rip, regs.rsp, regs.rax, regs.orig_rax)
    );
    assert_eq!(regs.cs, 0x33);

    // FPU state: fxsave and the first 512 bytes of xsave agree.
    let fp = ptrace::get_fpregs(tid).unwrap();
    let xs = ptrace::get_xsave(tid).unwrap();
    assert!(xs.len() >= 576, "xsave {} bytes", xs.len());
    let mxcsr = u32::from_ne_bytes(xs[24..28].try_into().unwrap());
    assert_eq!(fp.mxcsr, mxcsr);
    assert_eq!(fp.cwd, u16::from_ne_bytes(xs[0..2].try_into().unwrap()));
    // Round trips.
    let mut fp2 = fp;
    fp2.xmm_space[60] = 0x1234_5678;
    ptrace::set_fpregs(tid, &fp2).unwrap();
    assert_eq!(ptrace::get_fpregs(tid).unwrap().xmm_space[60], 0x1234_5678);
    ptrace::set_fpregs(tid, &fp).unwrap();
    ptrace::set_xsave(tid, &xs).unwrap();
    assert_eq!(ptrace::get_xsave(tid).unwrap(), xs);

    // Signal mask, seen in /proc as SigBlk.
    let mask = ptrace::get_sigmask(tid).unwrap();
    assert_eq!(mask, status_mask(tid, "SigBlk"));
    let usr2 = 1u64 << (libc::SIGUSR2 - 1);
    ptrace::set_sigmask(tid, mask | usr2).unwrap();
    assert_eq!(status_mask(tid, "SigBlk"), mask | usr2);
    ptrace::set_sigmask(tid, mask).unwrap();

    // rseq: glibc registers one per thread (unless disabled by tunable).
    let rseq = ptrace::get_rseq_config(tid).unwrap();
    if rseq.rseq_abi_pointer != 0 {
        assert!(rseq.rseq_abi_size >= 32);
        assert_eq!(rseq.signature, 0x5305_3053);
    }

    // Pending signals are visible and stay queued.
    ptrace::tgkill(p.pid, tid, libc::SIGUSR1).unwrap();
    let q = ptrace::peek_siginfo(tid, false).unwrap();
    assert!(q.iter().any(|s| s.signo() == libc::SIGUSR1), "{q:?}");
    assert_eq!(ptrace::peek_siginfo(tid, false).unwrap().len(), q.len());

    frozen.resume().unwrap();
    // The queued SIGUSR1 (default action: terminate) is delivered now.
    let mut child = p;
    let st = child.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGUSR1));
}

#[test]
fn signal_delivery_stop_is_passed_on_and_the_thread_still_stops() {
    let (p, addr) = spinner(1);
    let tid = p.pid;
    ptrace::seize(tid).unwrap();
    // Ignored by default, but a tracer sees it: a signal-delivery stop.
    ptrace::tgkill(p.pid, tid, libc::SIGWINCH).unwrap();
    assert_eq!(
        ptrace::wait_stop(tid).unwrap(),
        Stop::Signal(libc::SIGWINCH)
    );
    assert_eq!(
        ptrace::stop_kind(tid).unwrap(),
        Stop::Signal(libc::SIGWINCH)
    );
    assert_eq!(ptrace::get_siginfo(tid).unwrap().signo(), libc::SIGWINCH);
    // to_event_stop delivers it and still ends in an interrupt stop (the
    // signal-delivery stop consumed nothing we need).
    assert_eq!(ptrace::to_event_stop(tid).unwrap(), Stop::Interrupt);
    assert_eq!(state(p.pid, tid), Some('t'));
    let mut inj = Injector::new(tid).unwrap();
    assert_eq!(inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(), p.pid as i64);
    inj.finish().unwrap();
    ptrace::detach(tid).unwrap();
    assert!(wait_until(|| untraced(p.pid)));
    let now = counters(p.pid, addr, 2);
    assert!(all_counters_move(p.pid, addr, &now));
}
