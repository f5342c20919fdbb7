//! Buffered data of pipes and fifos, copied without consuming it: the
//! pipe is opened again through /proc (a second reader of the same pipe)
//! and tee(2) duplicates its buffer into a pipe of ours.

use super::fdscan::Fd;
use crate::error::{Error, Result};
use nix::fcntl::{fcntl, tee, FcntlArg, OFlag, SpliceFFlags};
use std::io::Read;
use std::os::fd::AsFd;

/// The bytes queued in the pipe behind `fd` of `pid`, and the pipe's size.
pub fn peek(pid: i32, fd: &Fd) -> Result<(Vec<u8>, u32)> {
    let what = || format!("pid {pid} fd {} ({})", fd.fd, fd.link);
    let p = format!("/proc/{pid}/fd/{}", fd.fd);
    let f = nix::fcntl::open(
        p.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io(format!("{}: open", what()), e.into()))?;
    let size = fcntl(&f, FcntlArg::F_GETPIPE_SZ)
        .map_err(|e| Error::io(format!("{}: F_GETPIPE_SZ", what()), e.into()))?;
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| Error::io("pipe2", e.into()))?;
    fcntl(&w, FcntlArg::F_SETPIPE_SZ(size))
        .map_err(|e| Error::io(format!("{}: F_SETPIPE_SZ", what()), e.into()))?;
    let n = match tee(
        f.as_fd(),
        w.as_fd(),
        size as usize,
        SpliceFFlags::SPLICE_F_NONBLOCK,
    ) {
        Ok(n) => n,
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => return Err(Error::io(format!("{}: tee", what()), e.into())),
    };
    drop(w);
    let mut data = Vec::with_capacity(n);
    std::fs::File::from(r)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(format!("{}: read copied data", what()), e))?;
    Ok((data, size as u32))
}
