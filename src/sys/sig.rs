//! Signal dispositions of the calling process.

/// Resets `sig` to its default action (SIG_DFL).
pub fn set_default(sig: nix::sys::signal::Signal) -> std::io::Result<()> {
    let sa = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::SigDfl,
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: installing SIG_DFL runs no handler code, so none of the
    // hazards of installing a Rust function as a handler apply.
    unsafe { nix::sys::signal::sigaction(sig, &sa) }
        .map(|_| ())
        .map_err(std::io::Error::from)
}

/// `signalfd(-1, mask, flags)` with a raw 64-bit mask (bit n-1 for signal
/// n, real-time signals included).
pub fn signalfd(mask: u64, flags: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let m = mask;
    // SAFETY: the kernel reads 8 bytes of mask from a live u64.
    let r = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &m as *const u64, 8usize, flags) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: r is a new descriptor nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
}
