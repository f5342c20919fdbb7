//! core-PID.img: one CoreEntry per thread, built from what the freezer
//! read (registers, FPU/xsave, TLS, signal state) and what /proc says.
//! Field presence follows CRIU 4.2 (see the counter fixture).

use crate::image::pb;
use crate::sys::cpu;

/// Registers and per-thread state read from a stopped thread.
#[derive(Debug, Clone, Default)]
pub struct ThreadRegs {
    pub gp: pb::UserX86RegsEntry,
    /// The NT_X86_XSTATE regset (xsave layout, non-compacted).
    pub xsave: Vec<u8>,
    /// GDT TLS entries 12..14.
    pub tls: Vec<pb::UserDescT>,
    pub blocked: u64,
    pub rseq: Option<pb::RseqEntry>,
    pub clear_tid_addr: u64,
    pub sas: pb::ThreadSasEntry,
}

fn u16_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]) as u32)
        .unwrap_or(0)
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8)
        .map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
        .unwrap_or(0)
}
fn u32s(b: &[u8], o: usize, n: usize) -> Vec<u32> {
    (0..n).map(|i| u32_at(b, o + 4 * i)).collect()
}
fn u64s(b: &[u8], o: usize, n: usize) -> Vec<u64> {
    (0..n).map(|i| u64_at(b, o + 8 * i)).collect()
}

/// FPU state in CRIU's form from an xsave buffer.
pub fn fpregs(x: &[u8]) -> pb::UserX86FpregsEntry {
    let mut f = pb::UserX86FpregsEntry {
        cwd: u16_at(x, 0),
        swd: u16_at(x, 2),
        twd: u16_at(x, 4),
        fop: u16_at(x, 6),
        rip: u64_at(x, 8),
        rdp: u64_at(x, 16),
        mxcsr: u32_at(x, 24),
        mxcsr_mask: u32_at(x, 28),
        st_space: u32s(x, 32, 32),
        xmm_space: u32s(x, 160, 64),
        padding: Vec::new(),
        xsave: None,
    };
    if cpu::has_osxsave() {
        let comp =
            |i: u32, elem: usize| cpu::xsave_component(i).map(|(off, size)| (off, size / elem));
        let mut xs = pb::UserX86XsaveEntry {
            xstate_bv: u64_at(x, 512),
            ..Default::default()
        };
        if let Some((o, n)) = comp(2, 4) {
            xs.ymmh_space = u32s(x, o, n);
        }
        if let Some((o, n)) = comp(3, 8) {
            xs.bndreg_state = u64s(x, o, n);
        }
        if let Some((o, n)) = comp(4, 8) {
            xs.bndcsr_state = u64s(x, o, n);
        }
        if let Some((o, n)) = comp(5, 8) {
            xs.opmask_reg = u64s(x, o, n);
        }
        if let Some((o, n)) = comp(6, 8) {
            xs.zmm_upper = u64s(x, o, n);
        }
        if let Some((o, n)) = comp(7, 8) {
            xs.hi16_zmm = u64s(x, o, n);
        }
        if let Some((o, n)) = comp(9, 4) {
            xs.pkru = u32s(x, o, n);
        }
        if cpu::has_shstk() {
            xs.cet = Some(pb::UserX86CetEntry { cet: 0, ssp: 0 });
        }
        f.xsave = Some(xs);
    }
    f
}

/// An empty GDT TLS slot as the kernel reports it.
pub fn empty_tls(entry: u32) -> pb::UserDescT {
    pb::UserDescT {
        entry_number: entry,
        base_addr: 0,
        limit: 0,
        seg_32bit: false,
        contents_h: false,
        contents_l: false,
        read_exec_only: true,
        limit_in_pages: false,
        seg_not_present: true,
        usable: false,
    }
}

/// Decodes a struct user_desc (16 bytes) as PTRACE_GET_THREAD_AREA fills it.
pub fn user_desc(b: &[u8; 16]) -> pb::UserDescT {
    let bits = u32_at(b, 12);
    pb::UserDescT {
        entry_number: u32_at(b, 0),
        base_addr: u32_at(b, 4),
        limit: u32_at(b, 8),
        seg_32bit: bits & 1 != 0,
        contents_h: bits & 4 != 0,
        contents_l: bits & 2 != 0,
        read_exec_only: bits & 8 != 0,
        limit_in_pages: bits & 16 != 0,
        seg_not_present: bits & 32 != 0,
        usable: bits & 64 != 0,
    }
}

/// Creds of a thread from its /proc status and securebits.
pub fn creds(st: &super::procfs::Status, secbits: u32) -> pb::CredsEntry {
    let caps = |v: u64| vec![v as u32, (v >> 32) as u32];
    pb::CredsEntry {
        uid: st.uids[0],
        euid: st.uids[1],
        suid: st.uids[2],
        fsuid: st.uids[3],
        gid: st.gids[0],
        egid: st.gids[1],
        sgid: st.gids[2],
        fsgid: st.gids[3],
        cap_inh: caps(st.cap_inh),
        cap_prm: caps(st.cap_prm),
        cap_eff: caps(st.cap_eff),
        cap_bnd: caps(st.cap_bnd),
        secbits,
        groups: st.groups.clone(),
        lsm_profile: None,
        lsm_sockcreate: None,
        apparmor_data: None,
        no_new_privs: if st.no_new_privs != 0 {
            Some(st.no_new_privs)
        } else {
            None
        },
        cap_amb: caps(st.cap_amb),
    }
}

/// A thread stopped inside an interrupted syscall has `-ERESTART*` in rax
/// and rip just past its `syscall`. The image gets the registers that
/// re-enter the call (rax = the syscall number, rip back over the 2-byte
/// `syscall`), as CRIU 4.2's dump writes them (compel's `get_task_regs`):
/// a restorer that only loads the registers (CRIU's `rt_sigreturn`, which
/// leaves orig_rax -1 and so no kernel restart) must not hand `-ERESTARTSYS`
/// to the program. For `-ERESTART_RESTARTBLOCK` (nanosleep, poll or futex
/// with a timeout) CRIU writes `-EINTR`; crit writes the re-entry too, as
/// `crit restore` does for such images (the restart block itself does not
/// survive a dump: a relative timeout starts over).
pub fn restartable_syscall(gp: &mut pb::UserX86RegsEntry) {
    const ERESTARTSYS: i64 = -512;
    const ERESTARTNOINTR: i64 = -513;
    const ERESTARTNOHAND: i64 = -514;
    const ERESTART_RESTARTBLOCK: i64 = -516;
    if (gp.orig_ax as i64) < 0 {
        return;
    }
    if let ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK = gp.ax as i64 {
        gp.ax = gp.orig_ax;
        gp.ip = gp.ip.wrapping_sub(2);
    }
}

/// The x86 part of a core entry.
pub fn thread_info(r: &ThreadRegs) -> pb::ThreadInfoX86 {
    let mut gp = r.gp;
    gp.mode = Some(pb::UserX86RegsMode::Native as i32);
    restartable_syscall(&mut gp);
    let mut tls = r.tls.clone();
    if tls.is_empty() {
        tls = (12..15).map(empty_tls).collect();
    }
    pb::ThreadInfoX86 {
        clear_tid_addr: r.clear_tid_addr,
        gpregs: gp,
        fpregs: fpregs(&r.xsave),
        tls,
    }
}

/// Maps a /proc state letter to CRIU's task_state (TASK_ALIVE = 1,
/// TASK_STOPPED = 3).
pub fn task_state(c: char) -> u32 {
    match c {
        'T' | 't' => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_syscalls_are_written_to_reenter() {
        let gp = |ax: i64, orig: i64| pb::UserX86RegsEntry {
            ax: ax as u64,
            orig_ax: orig as u64,
            ip: 0x1002,
            ..Default::default()
        };
        for code in [-512, -513, -514, -516] {
            let mut g = gp(code, 202);
            restartable_syscall(&mut g);
            assert_eq!((g.ax, g.ip, g.orig_ax), (202, 0x1000, 202), "{code}");
        }
        // A finished syscall, or no syscall at all, is left alone.
        for (ax, orig) in [(-4, 0), (5, 0), (-512, -1)] {
            let mut g = gp(ax, orig);
            restartable_syscall(&mut g);
            assert_eq!((g.ax, g.ip), (ax as u64, 0x1002));
        }
    }

    #[test]
    fn empty_desc_roundtrip() {
        let mut b = [0u8; 16];
        b[0] = 12;
        b[12] = 8 | 32;
        let d = user_desc(&b);
        assert_eq!(d, empty_tls(12));
    }
}
