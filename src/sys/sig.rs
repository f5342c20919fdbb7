//! Signal dispositions of the calling process.

/// Resets `sig` to its default action (SIG_DFL).
pub fn set_default(sig: nix::sys::signal::Signal) -> nix::Result<()> {
    let sa = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::SigDfl,
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: installing SIG_DFL runs no handler code, so none of the
    // hazards of installing a Rust function as a handler apply.
    unsafe { nix::sys::signal::sigaction(sig, &sa) }.map(|_| ())
}
