//! CRIU's page server protocol on the wire (its criu/page-xfer.c, 4.2):
//! every command is one 32-byte header in the sender's byte order
//! (x86_64: little endian), `{u32 cmd, 4 bytes of padding, u64 nr_pages,
//! u64 vaddr, u64 dst_id}`, sometimes followed by page data or answered
//! by a few bytes.
//!
//! | command | value | data after it | answer |
//! | --- | --- | --- | --- |
//! | ADD (old) | 1 | nr_pages pages | - |
//! | HOLE (old) | 2 | - | - |
//! | OPEN (old) | 3 | - | - |
//! | OPEN2 | 4 | - | 1 byte: the server has the parent's pagemap |
//! | PARENT | 5 | - | i32: the server has the parent's pagemap |
//! | ADD_F | 6 | the pages if the flags have PE_PRESENT | - |
//! | GET | 7 | - (lazy pages) | ADD_F header and the pages |
//! | CLOSE | 0x1023 | - | i32 status 0 |
//! | FORCE_CLOSE | 0x1024 | - | i32 status 0 |
//!
//! The command's high 16 bits carry ADD_F's pagemap flags. `dst_id` names
//! the pagemap: `id << 8 | type`, type 1 a task's (id: its pid in the
//! images), 2 shared memory (id: its shmid); older CRIUs used other type
//! numbers, still accepted.

/// Bytes of one header.
pub const HEADER: usize = 32;

pub const ADD: u32 = 1;
pub const HOLE: u32 = 2;
pub const OPEN: u32 = 3;
pub const OPEN2: u32 = 4;
pub const PARENT: u32 = 5;
pub const ADD_F: u32 = 6;
pub const GET: u32 = 7;
pub const CLOSE: u32 = 0x1023;
pub const FORCE_CLOSE: u32 = 0x1024;

const CMD_BITS: u32 = 16;
const TYPE_BITS: u32 = 8;

/// Which pagemap image a command is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dst {
    /// `pagemap-ID.img`: a task's, by its pid in the images.
    Task(u64),
    /// `pagemap-shmem-ID.img`: a shared memory segment's.
    Shmem(u64),
}

impl Dst {
    pub fn encode(self) -> u64 {
        match self {
            Dst::Task(id) => id << TYPE_BITS | 1,
            Dst::Shmem(id) => id << TYPE_BITS | 2,
        }
    }

    /// None for a type no CRIU ever sent.
    pub fn decode(v: u64) -> Option<Dst> {
        let id = v >> TYPE_BITS;
        // Besides 1 and 2, the numbers CRIU 1.0 to 3.2 used.
        match v & ((1 << TYPE_BITS) - 1) {
            1 | 10 | 11 | 16 | 17 => Some(Dst::Task(id)),
            2 | 27 | 28 | 29 | 32 | 33 | 34 => Some(Dst::Shmem(id)),
            _ => None,
        }
    }

    /// The pagemap image's name.
    pub fn pagemap_name(self) -> String {
        match self {
            Dst::Task(id) => format!("pagemap-{id}.img"),
            Dst::Shmem(id) => format!("pagemap-shmem-{id}.img"),
        }
    }
}

/// One command header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The command (low 16 bits of the wire's cmd).
    pub cmd: u32,
    /// ADD_F's pagemap flags (high 16 bits).
    pub flags: u32,
    pub nr_pages: u64,
    pub vaddr: u64,
    pub dst_id: u64,
}

impl Header {
    pub fn new(cmd: u32, dst: Option<Dst>) -> Header {
        Header {
            cmd,
            dst_id: dst.map_or(0, Dst::encode),
            ..Default::default()
        }
    }

    /// ADD_F for `nr_pages` pages at `vaddr` with pagemap `flags`.
    pub fn add(dst: Dst, vaddr: u64, nr_pages: u64, flags: u32) -> Header {
        Header {
            cmd: ADD_F,
            flags,
            nr_pages,
            vaddr,
            dst_id: dst.encode(),
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[0..4].copy_from_slice(&(self.flags << CMD_BITS | self.cmd).to_ne_bytes());
        b[8..16].copy_from_slice(&self.nr_pages.to_ne_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_ne_bytes());
        b[24..32].copy_from_slice(&self.dst_id.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; HEADER]) -> Header {
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        let cmd = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        Header {
            cmd: cmd & ((1 << CMD_BITS) - 1),
            flags: cmd >> CMD_BITS,
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_laid_out_as_criu_sends_it() {
        let h = Header::add(Dst::Task(42), 0x7f00_0000_1000, 3, 1 | 2);
        let b = h.to_bytes();
        // cmd 6 with flags 3 in the high half, then 4 bytes of padding.
        assert_eq!(&b[0..8], &[6, 0, 3, 0, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 3);
        assert_eq!(
            u64::from_le_bytes(b[16..24].try_into().unwrap()),
            0x7f00_0000_1000
        );
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            42 << 8 | 1
        );
        assert_eq!(Header::from_bytes(&b), h);
    }

    #[test]
    fn destinations_of_every_criu_decode() {
        assert_eq!(Dst::decode(7 << 8 | 1), Some(Dst::Task(7)));
        assert_eq!(Dst::decode(7 << 8 | 11), Some(Dst::Task(7)));
        assert_eq!(Dst::decode(9 << 8 | 2), Some(Dst::Shmem(9)));
        assert_eq!(Dst::decode(9 << 8 | 34), Some(Dst::Shmem(9)));
        assert_eq!(Dst::decode(9 << 8 | 3), None);
        assert_eq!(Dst::Shmem(9).pagemap_name(), "pagemap-shmem-9.img");
        let close = Header::new(CLOSE, None).to_bytes();
        assert_eq!(&close[0..4], &[0x23, 0x10, 0, 0]);
    }
}
