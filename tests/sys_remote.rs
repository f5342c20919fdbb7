//! Cross-process memory access.

mod kit;

use std::io::IoSliceMut;
use std::process::Command;

use crit::dump::freezer;
use crit::sys::errno_of;
use crit::sys::inject::Injector;
use crit::sys::remote::{self, RemoteIoVec};
use kit::sys::*;

#[test]
fn vectored_read_of_thousands_of_ranges() {
    // Our own memory, read back through process_vm_readv.
    let src: Vec<u8> = (0..3 << 20).map(|i: usize| (i % 253) as u8).collect();
    let base = src.as_ptr() as u64;
    let mut ranges = Vec::new();
    let mut expect = Vec::new();
    let mut off = 0usize;
    let mut i = 0usize;
    while ranges.len() < 3000 {
        let len = 1 + (i * 37) % 700;
        let gap = (i * 13) % 50;
        ranges.push(RemoteIoVec {
            base: base + off as u64,
            len,
        });
        expect.extend_from_slice(&src[off..off + len]);
        off += len + gap;
        i += 1;
    }
    // Local buffers cut differently from the remote ranges (and more than
    // IOV_MAX of them too).
    let total = expect.len();
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut left = total;
    let mut j = 0usize;
    while left > 0 {
        let n = (1 + (j * 91) % 500).min(left);
        bufs.push(vec![0; n]);
        left -= n;
        j += 1;
    }
    assert!(bufs.len() > remote::IOV_MAX);
    let mut slices: Vec<IoSliceMut> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    let me = std::process::id() as i32;
    assert_eq!(
        remote::read_vectored(me, &mut slices, &ranges).unwrap(),
        total
    );
    let got: Vec<u8> = bufs.concat();
    assert_eq!(got, expect);

    let mut one = vec![0u8; total];
    assert_eq!(remote::read_ranges(me, &mut one, &ranges).unwrap(), total);
    assert_eq!(one, expect);
}

#[test]
fn short_transfers_stop_at_the_hole() {
    let p = Proc::spawn(Command::new("sleep").arg("1000"));
    assert!(wait_until(|| state(p.pid, p.pid) == Some('S')));
    let frozen = freezer::freeze_tree(p.pid).unwrap();
    let mut inj = Injector::new(p.pid).unwrap();
    let pg = 4096u64;
    let a = inj
        .remote_mmap(
            0,
            3 * pg,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    inj.remote_munmap(a + pg, pg).unwrap();

    let data: Vec<u8> = (0..pg as usize).map(|i| i as u8 ^ 0x5a).collect();
    // A write across the hole stops at it.
    let mut big = data.clone();
    big.extend_from_slice(&data);
    assert_eq!(remote::write(p.pid, a, &big).unwrap(), pg as usize);
    remote::write_all(p.pid, a + 2 * pg, &data).unwrap();
    assert!(remote::write_all(p.pid, a, &big).is_err());

    let mut buf = vec![0u8; 3 * pg as usize];
    assert_eq!(remote::read(p.pid, a, &mut buf).unwrap(), pg as usize);
    assert_eq!(&buf[..pg as usize], &data[..]);
    // Starting in the hole: nothing transferred is an error, with errno.
    let e = remote::read(p.pid, a + pg, &mut buf).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EFAULT));
    assert!(e.to_string().contains(&p.pid.to_string()), "{e}");

    // Ranges around the hole are fine; a range in the hole ends the transfer.
    let r = [
        RemoteIoVec {
            base: a,
            len: pg as usize,
        },
        RemoteIoVec {
            base: a + 2 * pg,
            len: pg as usize,
        },
    ];
    let mut two = vec![0u8; 2 * pg as usize];
    assert_eq!(remote::read_ranges(p.pid, &mut two, &r).unwrap(), two.len());
    assert_eq!(&two[pg as usize..], &data[..]);
    let r3 = [
        r[0],
        RemoteIoVec {
            base: a + pg,
            len: 16,
        },
        r[1],
    ];
    let mut three = vec![0u8; 2 * pg as usize + 16];
    assert_eq!(
        remote::read_ranges(p.pid, &mut three, &r3).unwrap(),
        pg as usize
    );

    // write_ranges + read_ranges round trip.
    let fresh: Vec<u8> = (0..2 * pg as usize).map(|i| (i * 3) as u8).collect();
    assert_eq!(
        remote::write_ranges(p.pid, &fresh, &r).unwrap(),
        fresh.len()
    );
    let mut back = vec![0u8; fresh.len()];
    assert_eq!(
        remote::read_ranges(p.pid, &mut back, &r).unwrap(),
        fresh.len()
    );
    assert_eq!(back, fresh);

    inj.remote_munmap(a, 3 * pg).unwrap();
    inj.finish().unwrap();
    frozen.resume().unwrap();
}
