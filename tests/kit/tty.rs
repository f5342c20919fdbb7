//! Talking to a task through the master of its terminal.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Writes `line` through `master` and reads until the task's answer
/// "got:LINE" shows (10 s at most); returns all that was read.
pub fn converse(master: &OwnedFd, line: &str) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    nix::unistd::write(master, format!("{line}\n").as_bytes()).unwrap();
    let want = format!("got:{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains(&want) && Instant::now() < deadline {
        let mut p = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut p, PollTimeout::from(200u16)).unwrap_or(0) > 0 {
            let mut b = [0u8; 512];
            match nix::unistd::read(master, &mut b) {
                Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&b[..n])),
                _ => break,
            }
        }
    }
    seen
}
