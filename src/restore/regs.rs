//! A thread's registers from its core image: general registers with the
//! kernel's syscall-restart rule applied, and the FPU/SSE/AVX state as an
//! xsave area.

use super::remote::Regs;
use crate::error::Result;
use crate::image::pb;

const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// The registers of a thread as its image holds them. A thread stopped
/// inside a blocking syscall is written to re-enter it (rax = the syscall
/// number, rip back over the 2-byte `syscall`); an image that still holds
/// -ERESTART* in rax is brought to that form too ([`restart`]).
/// [`resume_point`] then decides how the thread goes back into the call.
pub fn from_image(g: &pb::UserX86RegsEntry, tid: u32) -> Result<Regs> {
    if g.mode.unwrap_or(1) != 1 {
        return Err(super::error::TaskError::Compat { tid }.into());
    }
    let mut r = Regs {
        r15: g.r15,
        r14: g.r14,
        r13: g.r13,
        r12: g.r12,
        bp: g.bp,
        bx: g.bx,
        r11: g.r11,
        r10: g.r10,
        r9: g.r9,
        r8: g.r8,
        ax: g.ax,
        cx: g.cx,
        dx: g.dx,
        si: g.si,
        di: g.di,
        orig_ax: g.orig_ax,
        ip: g.ip,
        cs: g.cs,
        flags: g.flags,
        sp: g.sp,
        ss: g.ss,
        fs_base: g.fs_base,
        gs_base: g.gs_base,
        ds: g.ds,
        es: g.es,
        fs: g.fs,
        gs: g.gs,
    };
    restart(&mut r);
    Ok(r)
}

/// Rewinds a thread that still holds -ERESTART* in rax to re-enter its
/// call. ERESTART_RESTARTBLOCK re-enters the original call too, since its
/// restart block did not survive the dump (a relative sleep starts over).
pub fn restart(r: &mut Regs) {
    if (r.orig_ax as i64) >= 0 {
        match r.ax as i64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => {
                r.ax = r.orig_ax;
                r.ip = r.ip.wrapping_sub(2);
            }
            _ => {}
        }
    }
}

/// The `syscall` instruction.
const SYSCALL: [u8; 2] = [0x0f, 0x05];

/// Where a thread resumes, given the two bytes at its rip (`None` when
/// they cannot be read). A thread written to re-enter a syscall (orig_rax
/// is the call, rax the same number, rip on a `syscall`) is put back where
/// the kernel had it: just past the `syscall`, -ERESTART* in rax. Detached
/// from its ptrace stop, the kernel's signal code then restarts the call,
/// or returns EINTR to a handler of a signal that came meanwhile, as for a
/// task never dumped. Resumed on the `syscall` itself instead, such a
/// signal's handler would run first and the call start over: a `pause()`
/// would miss the signal that should end it. Any other thread resumes
/// where it is, with orig_rax -1 so that the kernel restarts nothing.
pub fn resume_point(r: &mut Regs, insn: Option<[u8; 2]>) {
    let nr = r.orig_ax as i64;
    if nr >= 0 && r.ax == r.orig_ax && insn == Some(SYSCALL) {
        r.ip = r.ip.wrapping_add(2);
        r.ax = restart_code(nr) as u64;
    } else {
        r.orig_ax = u64::MAX;
    }
}

/// The -ERESTART* code the kernel leaves for an interrupted call `nr`
/// (x86_64): the waits that never restart after a handler (pause,
/// sigsuspend, select, poll, msgrcv) return -ERESTARTNOHAND, fork-like
/// calls -ERESTARTNOINTR, the rest -ERESTARTSYS (restarted after a handler
/// with SA_RESTART). Calls with a timeout return -ERESTART_RESTARTBLOCK,
/// which behaves as -ERESTARTNOHAND towards a handler.
fn restart_code(nr: i64) -> i64 {
    match nr {
        // poll, select, pause, msgrcv, rt_sigsuspend, pselect6, ppoll
        7 | 23 | 34 | 70 | 130 | 270 | 271 => ERESTARTNOHAND,
        // nanosleep, clock_nanosleep: a restart block when interrupted
        35 | 230 => ERESTARTNOHAND,
        // clone, fork, vfork, clone3
        56 | 57 | 58 | 435 => ERESTARTNOINTR,
        _ => ERESTARTSYS,
    }
}

fn put_u32s(buf: &mut [u8], at: usize, v: &[u32]) {
    for (i, x) in v.iter().enumerate() {
        let o = at + i * 4;
        if o + 4 <= buf.len() {
            buf[o..o + 4].copy_from_slice(&x.to_le_bytes());
        }
    }
}

fn put_u64s(buf: &mut [u8], at: usize, v: &[u64]) {
    for (i, x) in v.iter().enumerate() {
        let o = at + i * 8;
        if o + 8 <= buf.len() {
            buf[o..o + 8].copy_from_slice(&x.to_le_bytes());
        }
    }
}

/// Fills `buf` (the thread's current xsave area, standard format) with the
/// dumped FPU state.
pub fn fill_xsave(buf: &mut [u8], f: &pb::UserX86FpregsEntry) {
    if buf.len() < 576 {
        return;
    }
    buf[..512].fill(0);
    buf[0..2].copy_from_slice(&(f.cwd as u16).to_le_bytes());
    buf[2..4].copy_from_slice(&(f.swd as u16).to_le_bytes());
    buf[4..6].copy_from_slice(&(f.twd as u16).to_le_bytes());
    buf[6..8].copy_from_slice(&(f.fop as u16).to_le_bytes());
    buf[8..16].copy_from_slice(&f.rip.to_le_bytes());
    buf[16..24].copy_from_slice(&f.rdp.to_le_bytes());
    buf[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    buf[28..32].copy_from_slice(&f.mxcsr_mask.to_le_bytes());
    put_u32s(buf, 32, &f.st_space);
    put_u32s(buf, 160, &f.xmm_space);
    // Header: the components present; xcomp_bv 0 (standard format).
    let mut bv: u64 = 3;
    if let Some(x) = &f.xsave {
        let comp = |n: u32| crate::sys::cpu::xsave_component(n);
        if let Some((o, _)) = comp(2) {
            put_u32s(buf, o, &x.ymmh_space);
            bv |= x.xstate_bv & (1 << 2);
        }
        for (n, v) in [(5u32, &x.opmask_reg), (6, &x.zmm_upper), (7, &x.hi16_zmm)] {
            if let Some((o, _)) = comp(n) {
                put_u64s(buf, o, v);
                bv |= x.xstate_bv & (1 << n);
            }
        }
        if let Some((o, _)) = comp(9) {
            put_u32s(buf, o, &x.pkru);
            bv |= x.xstate_bv & (1 << 9);
        }
        bv &= x.xstate_bv | 3;
    }
    buf[512..520].copy_from_slice(&bv.to_le_bytes());
    buf[520..528].copy_from_slice(&0u64.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_rules() {
        let regs = |ax: i64, orig: i64| Regs {
            ax: ax as u64,
            orig_ax: orig as u64,
            ip: 0x1002,
            ..Default::default()
        };
        for code in [-512, -513, -514, -516] {
            let mut r = regs(code, 7);
            restart(&mut r);
            assert_eq!((r.ax, r.ip, r.orig_ax), (7, 0x1000, 7), "{code}");
        }
        // A finished call, or none, is left alone.
        for (ax, orig) in [(-4, 7), (5, 7), (-512, -1)] {
            let mut r = regs(ax, orig);
            restart(&mut r);
            assert_eq!((r.ax, r.ip), (ax as u64, 0x1002));
        }
    }

    #[test]
    fn a_thread_in_a_call_resumes_just_past_its_syscall() {
        let regs = |ax: i64, orig: i64| Regs {
            ax: ax as u64,
            orig_ax: orig as u64,
            ip: 0x1000,
            ..Default::default()
        };
        for (nr, code) in [(34, -514), (0, -512), (202, -512), (56, -513), (230, -514)] {
            let mut r = regs(nr, nr);
            resume_point(&mut r, Some([0x0f, 0x05]));
            assert_eq!(
                (r.ax as i64, r.ip, r.orig_ax),
                (code, 0x1002, nr as u64),
                "{nr}"
            );
        }
        // Not on a syscall, not the call's number, no call, or unreadable
        // code: resumes where it is, and the kernel restarts nothing.
        for (ax, orig, insn) in [
            (34, 34, Some([0x90, 0x90])),
            (-4, 34, Some([0x0f, 0x05])),
            (5, -1, Some([0x0f, 0x05])),
            (34, 34, None),
        ] {
            let mut r = regs(ax, orig);
            resume_point(&mut r, insn);
            assert_eq!((r.ax as i64, r.ip, r.orig_ax), (ax, 0x1000, u64::MAX));
        }
    }
}
