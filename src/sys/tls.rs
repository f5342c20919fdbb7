//! PTRACE_GET_THREAD_AREA: the GDT TLS entries (12, 13, 14 on x86-64) of a
//! stopped tracee, which crit::sys::ptrace does not read.

use nix::libc;

const PTRACE_GET_THREAD_AREA: libc::c_long = 25;

/// The raw `struct user_desc` (16 bytes) of GDT entry `entry` of `tid`,
/// which must be a stopped tracee of the calling thread.
pub fn get_thread_area(tid: i32, entry: u32) -> std::io::Result<[u8; 16]> {
    let mut b = [0u32; 4];
    // SAFETY: PTRACE_GET_THREAD_AREA writes one struct user_desc (16 bytes)
    // to `data`, which points to a live 16-byte buffer; `addr` is the
    // entry number, an integer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            PTRACE_GET_THREAD_AREA,
            tid as libc::c_long,
            entry as libc::c_long,
            b.as_mut_ptr() as *mut libc::c_void,
        )
    };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = [0u8; 16];
    for (i, w) in b.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Ok(out)
}
