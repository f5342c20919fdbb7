//! Buffered data of pipes and fifos, copied without consuming it: crit
//! takes a copy of the task's descriptor (pidfd_getfd) and, when the pipe
//! holds anything (FIONREAD), tee(2) duplicates its buffer into a pipe of
//! ours. Most pipes are empty: four calls, no path lookup.

use super::error::DumpError;
use super::fdscan::Fd;
use crate::error::Result;
use nix::fcntl::{fcntl, tee, FcntlArg, OFlag, SpliceFFlags};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

/// The bytes queued in the pipe behind `fd` of `pid`, and the pipe's size;
/// `f` is crit's copy of that descriptor (readable).
pub fn peek(pid: i32, fd: &Fd, f: OwnedFd) -> Result<(Vec<u8>, u32)> {
    // A failed step on the pipe.
    let err = |what: &'static str, e: std::io::Error| DumpError::FdFile {
        pid,
        fd: fd.fd,
        link: fd.link.clone(),
        what,
        source: e,
    };
    let size = fcntl(&f, FcntlArg::F_GETPIPE_SZ).map_err(|e| err("F_GETPIPE_SZ", e.into()))?;
    let queued = crate::sys::fdops::bytes_to_read(f.as_fd()).map_err(|e| err("FIONREAD", e))?;
    if queued == 0 {
        return Ok((Vec::new(), size as u32));
    }
    let (r, w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| DumpError::Call {
            what: "pipe2",
            source: e.into(),
        })?;
    fcntl(&w, FcntlArg::F_SETPIPE_SZ(size)).map_err(|e| err("F_SETPIPE_SZ", e.into()))?;
    let n = match tee(
        f.as_fd(),
        w.as_fd(),
        size as usize,
        SpliceFFlags::SPLICE_F_NONBLOCK,
    ) {
        Ok(n) => n,
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => return Err(err("tee", e.into()).into()),
    };
    drop(w);
    let mut data = Vec::with_capacity(n);
    std::fs::File::from(r)
        .read_to_end(&mut data)
        .map_err(|e| err("read copied data", e))?;
    Ok((data, size as u32))
}
