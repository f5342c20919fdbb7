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

/// The registers the thread resumes with. A thread stopped inside a
/// blocking syscall has -ERESTART* in rax: it re-enters the call, as the
/// kernel's restart logic would (rax = the syscall number, rip back over
/// the 2-byte `syscall`). ERESTART_RESTARTBLOCK re-enters the original call
/// too, since its restart block did not survive the dump (a relative sleep
/// starts over). orig_rax is -1 so that the kernel does no restart of its own.
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

/// Applies the syscall-restart rule (see [`from_image`]).
pub fn restart(r: &mut Regs) {
    if (r.orig_ax as i64) >= 0 {
        match r.ax as i64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => {
                r.ax = r.orig_ax;
                r.ip -= 2;
            }
            _ => {}
        }
    }
    r.orig_ax = u64::MAX;
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
        let mut r = Regs {
            ax: (-512i64) as u64,
            orig_ax: 7,
            ip: 0x1002,
            ..Default::default()
        };
        restart(&mut r);
        assert_eq!((r.ax, r.ip, r.orig_ax), (7, 0x1000, u64::MAX));
        let mut r = Regs {
            ax: (-4i64) as u64,
            orig_ax: 7,
            ip: 0x1002,
            ..Default::default()
        };
        restart(&mut r);
        assert_eq!((r.ax as i64, r.ip), (-4, 0x1002));
        let mut r = Regs {
            ax: (-516i64) as u64,
            orig_ax: 230,
            ip: 0x1002,
            ..Default::default()
        };
        restart(&mut r);
        assert_eq!((r.ax, r.ip), (230, 0x1000));
        let mut r = Regs {
            ax: (-512i64) as u64,
            orig_ax: u64::MAX,
            ip: 0x1002,
            ..Default::default()
        };
        restart(&mut r);
        assert_eq!(r.ip, 0x1002);
    }
}
