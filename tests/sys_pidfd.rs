//! pidfds and copying another process's descriptors.

mod kit;

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use crit::sys::{errno_of, pidfd};
use kit::sys::*;

#[test]
fn getfd_copies_a_pipe_we_can_write_through() {
    let p = Proc::spawn(Command::new("sleep").arg("1000"));
    // fd 1 of sleep is the write end of the pipe we read its stdout from.
    let fd = pidfd::getfd(p.pid, 1).unwrap();
    let mut f = File::from(fd);
    f.write_all(b"through pidfd_getfd\n").unwrap();
    assert_eq!(p.line(), "through pidfd_getfd");
    // Same file description: a pipe.
    let meta = f.metadata().unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(meta.file_type().is_fifo());
}

#[test]
fn getfd_of_a_missing_fd_names_it() {
    let p = Proc::spawn(Command::new("sleep").arg("1000"));
    let pfd = pidfd::pidfd_open(p.pid).unwrap();
    let e = pidfd::pidfd_getfd(&pfd, 777).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EBADF));
    assert!(e.to_string().contains("777"), "{e}");
}

#[test]
fn send_signal_through_pidfd() {
    let mut p = Proc::spawn(Command::new("sleep").arg("1000"));
    let pfd = pidfd::pidfd_open(p.pid).unwrap();
    pidfd::pidfd_send_signal(&pfd, libc::SIGTERM).unwrap();
    let st = p.child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    // The pidfd still names the (now reaped) process: signalling fails
    // instead of hitting a recycled pid.
    let e = pidfd::pidfd_send_signal(&pfd, libc::SIGTERM).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::ESRCH));
}

#[test]
fn pidfd_open_of_no_process_fails() {
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id() as i32;
    gone.wait().unwrap();
    let e = pidfd::pidfd_open(pid).unwrap_err();
    assert!(e.to_string().contains(&pid.to_string()), "{e}");
}

#[test]
fn mrelease_refuses_a_living_process_and_helps_a_killed_one() {
    let mut p = Proc::spawn(Command::new("sleep").arg("1000"));
    let pfd = pidfd::pidfd_open(p.pid).unwrap();
    // Not dying: the kernel leaves its memory alone.
    let e = pidfd::process_mrelease(&pfd).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EINVAL), "{e}");
    assert!(e.to_string().contains("process_mrelease"), "{e}");
    pidfd::pidfd_send_signal(&pfd, libc::SIGKILL).unwrap();
    // Dying: freed here, or already let go of by its own exit (ESRCH).
    if let Err(e) = pidfd::process_mrelease(&pfd) {
        assert_eq!(errno_of(&e), Some(libc::ESRCH), "{e}");
    }
    let st = p.child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
}
