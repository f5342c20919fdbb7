//! Reading the seccomp filters of a stopped tracee
//! (PTRACE_SECCOMP_GET_FILTER, PTRACE_SECCOMP_GET_METADATA), which
//! crit::sys::ptrace does not wrap. Needs CAP_SYS_ADMIN.

use nix::libc;

const PTRACE_SECCOMP_GET_FILTER: libc::c_long = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: libc::c_long = 0x420d;
/// BPF_MAXINSNS: the most instructions a classic BPF program may have.
const MAX_INSNS: usize = 4096;

/// One filter of a thread: its classic BPF program (8 bytes per
/// instruction) and its SECCOMP_FILTER_FLAG_* flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub prog: Vec<u8>,
    pub flags: u64,
}

/// The filters of `tid`, oldest first (the kernel's index 0 is the filter
/// installed first, whatever ptrace(2) says). `tid` must be a stopped tracee of
/// the calling thread.
pub fn filters(tid: i32) -> std::io::Result<Vec<Filter>> {
    let mut out = Vec::new();
    let mut buf = vec![0u64; MAX_INSNS];
    for i in 0.. {
        // SAFETY: PTRACE_SECCOMP_GET_FILTER writes at most BPF_MAXINSNS
        // struct sock_filter (8 bytes each) to `data`, which points to a
        // live buffer of exactly that size; `addr` is an integer index.
        let n = unsafe {
            libc::syscall(
                libc::SYS_ptrace,
                PTRACE_SECCOMP_GET_FILTER,
                tid as libc::c_long,
                i as libc::c_long,
                buf.as_mut_ptr() as *mut libc::c_void,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                break;
            }
            return Err(e);
        }
        let n = (n as usize).min(MAX_INSNS);
        let prog: Vec<u8> = buf[..n].iter().flat_map(|w| w.to_ne_bytes()).collect();
        // struct seccomp_metadata { __u64 filter_off; __u64 flags; }
        let mut meta = [i as u64, 0u64];
        // SAFETY: PTRACE_SECCOMP_GET_METADATA reads filter_off from and
        // writes flags to the 16-byte struct `data` points to; `addr` is
        // its size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_ptrace,
                PTRACE_SECCOMP_GET_METADATA,
                tid as libc::c_long,
                std::mem::size_of_val(&meta) as libc::c_long,
                meta.as_mut_ptr() as *mut libc::c_void,
            )
        };
        let flags = if r < 0 { 0 } else { meta[1] };
        out.push(Filter { prog, flags });
    }
    Ok(out)
}
