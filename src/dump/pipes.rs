//! Buffered data of pipes and fifos, copied without consuming it: the
//! pipe is opened again through /proc (a second reader of the same pipe)
//! and tee(2) duplicates its buffer into a pipe of ours.

use super::error::DumpError;
use super::fdscan::Fd;
use crate::error::Result;
use nix::fcntl::{fcntl, tee, FcntlArg, OFlag, SpliceFFlags};
use std::io::Read;
use std::os::fd::AsFd;

/// The bytes queued in the pipe behind `fd` of `pid`, and the pipe's size.
pub fn peek(pid: i32, fd: &Fd) -> Result<(Vec<u8>, u32)> {
    // A failed step on the pipe.
    let err = |what: &'static str, e: std::io::Error| DumpError::FdFile {
        pid,
        fd: fd.fd,
        link: fd.link.clone(),
        what,
        source: e,
    };
    let p = format!("/proc/{pid}/fd/{}", fd.fd);
    let f = nix::fcntl::open(
        p.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| err("open", e.into()))?;
    let size = fcntl(&f, FcntlArg::F_GETPIPE_SZ).map_err(|e| err("F_GETPIPE_SZ", e.into()))?;
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
