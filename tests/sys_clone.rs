//! Forking with a chosen pid.

mod kit;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crit::sys::clone::{self, ForkResult};
use crit::sys::errno_of;

/// A pid that is free now, well away from where the kernel allocates.
fn free_pid(skip: i32) -> i32 {
    let max = clone::pid_max().unwrap();
    let last = clone::read_ns_last_pid().unwrap();
    let mut p = last + 5000 + skip;
    loop {
        if p >= max {
            p = 1000 + (p % max);
        }
        if !clone::pid_in_use(p) {
            return p;
        }
        p += 1;
    }
}

#[test]
fn clone3_with_tid_gets_the_requested_pid() {
    for attempt in 0..20 {
        let want = free_pid(attempt * 97);
        match clone::clone3_with_tid(&[want], 0) {
            Ok(ForkResult::Child) => clone::child_exit(7),
            Ok(ForkResult::Parent(got)) => {
                assert_eq!(got, want);
                assert_eq!(
                    waitpid(Pid::from_raw(got), None).unwrap(),
                    WaitStatus::Exited(Pid::from_raw(got), 7)
                );
                return;
            }
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => continue, // taken meanwhile
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free pid obtained in 20 attempts");
}

#[test]
fn clone3_with_a_taken_pid_is_eexist() {
    let me = std::process::id() as i32;
    let e = clone::clone3_with_tid(&[me], 0).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EEXIST));
    assert!(e.to_string().contains(&me.to_string()), "{e}");
}

#[test]
fn clone3_refuses_flags_that_share_memory() {
    let e = clone::clone3_with_tid(&[free_pid(0)], libc::CLONE_VM as u64).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EINVAL));
    let e = clone::clone3_with_tid(&[], 0).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EINVAL));
}
