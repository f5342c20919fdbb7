//! Terminals in CRIU's images: which pty a device is, tty-info ids, and
//! termios as tty.proto keeps them. Shared by the dump (which writes
//! them) and the restore (which sets them again).

use crate::image::pb;
use crate::sys::tty::{Termios, NCCS};

/// Major numbers of Unix98 pty slaves (/dev/pts/N).
const PTS_MAJORS: std::ops::RangeInclusive<u64> = 136..=143;

/// The pty index of slave device `rdev` (its N in /dev/pts/N).
pub fn pts_index(rdev: u64) -> Option<u32> {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    PTS_MAJORS
        .contains(&major)
        .then(|| ((major - 136) * 256 + minor) as u32)
}

/// CRIU's tty-info id of pty `index`'s slave (masters get the odd ones).
pub fn info_id(index: u32) -> u32 {
    index << 1
}

/// CRIU's tty-info id of pty `index`'s master.
pub fn master_info_id(index: u32) -> u32 {
    index << 1 | 1
}

/// The pty index a tty-info id names, and whether it is the master's.
pub fn index_of_id(id: u32) -> (u32, bool) {
    (id >> 1, id & 1 == 1)
}

/// The device number of pty `index`'s slave (what /proc/PID/stat's
/// tty_nr names for a task whose controlling terminal it is).
pub fn pts_rdev(index: u32) -> u64 {
    nix::sys::stat::makedev(136 + u64::from(index / 256), u64::from(index % 256))
}

/// A termios as CRIU stores it: the 19 control characters as bytes laid
/// over the first words of `c_cc` (little-endian), which has 19 words;
/// CRIU copies them back the same way. Speeds are not kept.
pub fn termios_entry(t: &Termios) -> pb::TermiosEntry {
    let mut words = vec![0u32; NCCS];
    for (i, &c) in t.cc.iter().enumerate() {
        words[i / 4] |= u32::from(c) << (8 * (i % 4));
    }
    pb::TermiosEntry {
        c_iflag: t.iflag,
        c_oflag: t.oflag,
        c_cflag: t.cflag,
        c_lflag: t.lflag,
        c_line: t.line.into(),
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc: words,
    }
}

/// The termios an entry holds (None: fewer control characters than the
/// kernel has, as CRIU refuses too).
pub fn termios_of(e: &pb::TermiosEntry) -> Option<Termios> {
    if e.c_cc.len() < NCCS {
        return None;
    }
    let mut cc = [0u8; NCCS];
    for (i, c) in cc.iter_mut().enumerate() {
        *c = (e.c_cc[i / 4] >> (8 * (i % 4))) as u8;
    }
    Some(Termios {
        iflag: e.c_iflag,
        oflag: e.c_oflag,
        cflag: e.c_cflag,
        lflag: e.c_lflag,
        line: e.c_line as u8,
        cc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_lie_over_words_as_criu_copies_them() {
        let mut t = Termios {
            iflag: 1280,
            oflag: 5,
            cflag: 191,
            lflag: 35387,
            ..Default::default()
        };
        t.cc[..4].copy_from_slice(&[0x03, 0x1c, 0x7f, 0x15]);
        t.cc[18] = 0x42;
        let e = termios_entry(&t);
        // CRIU 4.2's image of a runc console has 360651779 first.
        assert_eq!(e.c_cc[0], 360651779);
        assert_eq!(e.c_cc[4], 0x42 << 16);
        assert_eq!(termios_of(&e), Some(t));
        let short = pb::TermiosEntry {
            c_cc: vec![0; 5],
            ..e
        };
        assert_eq!(termios_of(&short), None);
    }

    #[test]
    fn slave_devices() {
        let d = nix::sys::stat::makedev;
        assert_eq!(pts_index(d(136, 0)), Some(0));
        assert_eq!(pts_index(d(137, 3)), Some(259));
        assert_eq!(pts_index(d(4, 1)), None);
        assert_eq!(info_id(3), 6);
        assert_eq!(master_info_id(3), 7);
        assert_eq!(index_of_id(7), (3, true));
        assert_eq!(index_of_id(6), (3, false));
        for i in [0, 255, 256, 1000] {
            assert_eq!(pts_index(pts_rdev(i)), Some(i));
        }
    }
}
