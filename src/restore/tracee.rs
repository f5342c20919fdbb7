//! The [`Tracee`] of the restore on top of `crate::sys` (ptrace, injection,
//! remote memory).

use super::remote::{Regs, Tracee};
use crate::error::{Error, Result};

pub struct SysTracee {
    tid: u32,
}

pub fn seize(pid: u32) -> Result<SysTracee> {
    Err(Error::msg(format!("pid {pid}: not yet")))
}

impl SysTracee {
    pub fn unregister_rseq(&mut self) -> Result<()> {
        Ok(())
    }
    pub fn use_scratch(&mut self, _addr: u64, _len: u64) -> Result<()> {
        Ok(())
    }
    pub fn release_scratch(&mut self) {}
    pub fn new_thread(&mut self, tid: u32, _scratch: u64) -> Result<SysTracee> {
        Err(Error::msg(format!("tid {tid}: threads not yet")))
    }
    pub fn detach(self) -> Result<()> {
        Ok(())
    }
}

impl Tracee for SysTracee {
    fn tid(&self) -> u32 {
        self.tid
    }
    fn syscall(&mut self, _nr: i64, _args: [u64; 6]) -> Result<i64> {
        Err(Error::msg("not yet"))
    }
    fn write_mem(&mut self, _iov: &[(u64, &[u8])]) -> Result<()> {
        Err(Error::msg("not yet"))
    }
    fn set_regs(&mut self, _r: &Regs) -> Result<()> {
        Err(Error::msg("not yet"))
    }
    fn get_xsave(&mut self) -> Result<Vec<u8>> {
        Err(Error::msg("not yet"))
    }
    fn set_xsave(&mut self, _x: &[u8]) -> Result<()> {
        Err(Error::msg("not yet"))
    }
    fn set_sigmask(&mut self, _mask: u64) -> Result<()> {
        Err(Error::msg("not yet"))
    }
}
