//! Passing descriptors over unix sockets (SCM_RIGHTS), one message at a
//! time, with received descriptors owned at once (close-on-exec).

use super::err;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Sends `data` with copies of `fds` on the connected socket `sock`.
pub fn send(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &[IoSlice::new(data)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| err::os("sendmsg", e as i32))?;
    if n != data.len() {
        return Err(err::os(
            format_args!("sendmsg sent {n} of {}", data.len()),
            libc::EIO,
        ));
    }
    Ok(())
}

/// Receives one message into `buf` and the descriptors it carries (at
/// most 16). Returns the message's length (0: the peer closed).
pub fn recv(sock: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 16]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| err::os("recvmsg", e as i32))?;
    let mut fds = Vec::new();
    for c in msg
        .cmsgs()
        .map_err(|e| err::os("recvmsg control data", e as i32))?
    {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors in this
            // process for this message; nothing else owns them.
            fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(err::os("recvmsg: descriptors cut off", libc::EMSGSIZE));
    }
    Ok((msg.bytes, fds))
}
