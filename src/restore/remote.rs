//! What the restore needs from a stopped thread it rebuilds: run one
//! syscall inside it, write its memory, read and set its registers. The
//! implementation sits on `crate::sys` (ptrace, injection, remote memory);
//! the restore logic only sees this trait, so it can be read (and tested)
//! without the kernel plumbing.

use crate::error::Result;

/// x86-64 general registers, in `struct user_regs_struct` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    pub orig_ax: u64,
    pub ip: u64,
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

pub trait Tracee {
    /// The thread's id (in the images).
    fn tid(&self) -> u32;
    /// The thread's id in crit's pid namespace (for /proc and ptrace).
    fn host_tid(&self) -> u32 {
        self.tid()
    }
    /// Runs syscall `nr` in the thread; returns the raw result (a negative
    /// errno on failure).
    fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64>;
    /// Writes memory of the thread's process, one or many ranges.
    fn write_mem(&mut self, iov: &[(u64, &[u8])]) -> Result<()>;
    /// Reads memory of the thread's process.
    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> Result<()>;
    /// Runs many syscalls in order; returns each raw result. Implementations
    /// may run them all in one go inside the tracee.
    fn batch(&mut self, calls: &[(i64, [u64; 6])]) -> Result<Vec<i64>> {
        calls.iter().map(|&(nr, a)| self.syscall(nr, a)).collect()
    }
    /// Like [`Tracee::write_mem`] for bulk page data: may split the work
    /// over several threads of crit.
    fn write_pages(&mut self, iov: &[(u64, &[u8])]) -> Result<()> {
        self.write_mem(iov)
    }
}

/// Runs a syscall and turns a negative result into an error naming it.
pub fn call(t: &mut dyn Tracee, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
    let r = t.syscall(nr, args)?;
    if (-4095..0).contains(&r) {
        return Err(super::error::TaskError::Injected {
            pid: t.tid(),
            call: what.to_string(),
            source: std::io::Error::from_raw_os_error(-r as i32),
        }
        .into());
    }
    Ok(r as u64)
}
