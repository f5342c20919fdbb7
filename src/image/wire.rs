//! Protobuf wire format: the few primitives the transcoder needs, reading
//! from byte slices with positions so that errors can name an offset.

pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// One field as found on the wire.
#[derive(Clone, Copy, Debug)]
pub struct RawField<'a> {
    pub number: u32,
    pub wire: u8,
    /// The varint or fixed value; for `LEN`, the payload length.
    pub value: u64,
    /// For `LEN`, the payload.
    pub data: &'a [u8],
    /// Tag and value, exactly as they were on the wire.
    pub raw: &'a [u8],
    /// Offset of the tag within the message.
    pub offset: usize,
}

impl RawField<'_> {
    /// A placeholder, for filling arrays before use.
    pub const EMPTY: RawField<'static> = RawField {
        number: 0,
        wire: 0,
        value: 0,
        data: &[],
        raw: &[],
        offset: 0,
    };
}

/// Reads a varint at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err("truncated varint");
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err("varint longer than 64 bits");
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 64 bits")
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub fn put_tag(out: &mut Vec<u8>, number: u32, wire: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire));
}

/// Iterates over the fields of one encoded message.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }
}

/// A wire-format error and the offset within the message where it is.
#[derive(Debug)]
pub struct WireError {
    pub offset: usize,
    pub reason: String,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<RawField<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let r = next_field(self.buf, &mut self.pos, start);
        if r.is_err() {
            // Stop after the first error.
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

fn next_field<'a>(buf: &'a [u8], pos: &mut usize, start: usize) -> Result<RawField<'a>, WireError> {
    let err = |offset, reason: &str| WireError {
        offset,
        reason: reason.to_string(),
    };
    let tag = read_varint(buf, pos).map_err(|r| err(start, r))?;
    let number = tag >> 3;
    let wire = (tag & 7) as u8;
    if number == 0 || number > 0x1fff_ffff {
        return Err(err(start, &format!("invalid field number {number}")));
    }
    let vstart = *pos;
    let (value, data): (u64, &[u8]) = match wire {
        VARINT => (read_varint(buf, pos).map_err(|r| err(vstart, r))?, &[]),
        FIXED64 => {
            let b = buf
                .get(*pos..*pos + 8)
                .ok_or_else(|| err(vstart, "truncated fixed64"))?;
            *pos += 8;
            (u64::from_le_bytes(b.try_into().unwrap_or([0; 8])), &[])
        }
        FIXED32 => {
            let b = buf
                .get(*pos..*pos + 4)
                .ok_or_else(|| err(vstart, "truncated fixed32"))?;
            *pos += 4;
            (
                u64::from(u32::from_le_bytes(b.try_into().unwrap_or([0; 4]))),
                &[],
            )
        }
        LEN => {
            let len = read_varint(buf, pos).map_err(|r| err(vstart, r))?;
            let avail = (buf.len() - *pos) as u64;
            if len > avail {
                return Err(err(
                    vstart,
                    &format!("length {len} runs past the end of the message ({avail} bytes left)"),
                ));
            }
            let d = &buf[*pos..*pos + len as usize];
            *pos += len as usize;
            (len, d)
        }
        other => return Err(err(start, &format!("unsupported wire type {other}"))),
    };
    Ok(RawField {
        number: number as u32,
        wire,
        value,
        data,
        raw: &buf[start..*pos],
        offset: start,
    })
}
