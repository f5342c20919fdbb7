//! A socket's classic BPF filter as CRIU's images keep it
//! (`sk_opts_entry.so_filter`): one fixed64 per instruction, packed field
//! by field so that the image does not depend on the machine's byte
//! order: code in bits 48-63, jt in 40-47, jf in 32-39, k in 0-31.

use crate::sys::sockopt::SockFilter;

pub fn pack(f: &SockFilter) -> u64 {
    (u64::from(f.code) << 48) | (u64::from(f.jt) << 40) | (u64::from(f.jf) << 32) | u64::from(f.k)
}

pub fn unpack(v: u64) -> SockFilter {
    SockFilter {
        code: (v >> 48) as u16,
        jt: (v >> 40) as u8,
        jf: (v >> 32) as u8,
        k: v as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_pack_field_by_field() {
        // BPF_RET | BPF_K, 96 bytes kept.
        let ret = SockFilter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 96,
        };
        assert_eq!(pack(&ret), 0x0006_0000_0000_0060);
        let jeq = SockFilter {
            code: 0x15,
            jt: 1,
            jf: 2,
            k: 0x0800,
        };
        assert_eq!(pack(&jeq), 0x0015_0102_0000_0800);
        assert_eq!(unpack(pack(&jeq)), jeq);
    }
}
