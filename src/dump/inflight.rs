//! Files only in flight: passed in a queued unix message (SCM_RIGHTS)
//! and closed by the sender before the receiver took them, so that no
//! task of the tree holds them. Peeking the queue gave crit a descriptor
//! of each; it is dumped from there as an open file of crit's own (CRIU
//! does the same), with no fdinfo entry: the restore opens it, sends it
//! with its message and closes its own copy. A socket in flight may have
//! messages of its own passing more files: dumped until none is left.

use super::context::DumpCtx;
use super::error::DumpError;
use super::fdscan;
use crate::error::Result;
use std::collections::HashSet;

/// Dumps every file passed in a queued message that no task holds.
pub fn dump_unheld(ctx: &mut DumpCtx) -> Result<()> {
    let me = std::process::id() as i32;
    let mut seen: HashSet<i32> = HashSet::new();
    loop {
        let fresh: Vec<_> = ctx
            .socks
            .passed_fds()
            .into_iter()
            .filter(|(f, _)| seen.insert(*f))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for (f, (pid, fd, ino)) in fresh {
            if ctx.files.held_id(f)?.is_some() {
                continue;
            }
            let probes = ctx.probes;
            let socks = &mut ctx.socks;
            let mut found = fdscan::scan_listed(me, &[f], &probes, &mut |i| socks.known(i))?;
            let Some(mut file) = found.pop() else {
                continue;
            };
            fdscan::settle(me, std::slice::from_mut(&mut file), None, probes.shmem_dev)?;
            // A kind crit cannot dump is refused as a task's would be,
            // naming the queue it was found in.
            let refused = |why: String| -> crate::error::Error {
                DumpError::InFlightRefused { pid, fd, ino, why }.into()
            };
            if super::fdtypes::file_type(ctx, me, &file).is_err() {
                return Err(refused(format!("{}, a kind crit does not dump", file.link)));
            }
            let (id, new) = ctx.files.fd_id(me, &file)?;
            if new {
                super::fdtypes::dump_fd(ctx, me, &file, id)
                    .map_err(|e| refused(format!("{}: {e}", file.link)))?;
            }
            ctx.log.debug(&format!(
                "pid {pid} fd {fd}: a file only in flight in unix socket {ino}'s queue: {} (file id {id})",
                file.link
            ));
        }
    }
}
