//! Byte-exact reimplementations of the two ways CRIU's Python `crit` 4.2
//! renders protobuf `bytes` fields in JSON:
//!
//! 1. `base64.encodebytes(value).decode()` / `base64.decodebytes(text)`
//!    (CPython 3.11 `binascii.b2a_base64` in 57-byte chunks, and the
//!    non-strict `binascii.a2b_base64`).
//! 2. For unix socket names: `quopri.encodestring(value).decode()` /
//!    `quopri.decodestring(text)`, i.e. CPython 3.11
//!    `binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)` and
//!    `binascii.a2b_qp(data, header=False)`.
//!
//! Everything here is std-only, allocation-bounded and panic-free on any
//! input.

const B64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `base64.MAXBINSIZE`: bytes per output line of `encodebytes`.
pub const B64_MAXBINSIZE: usize = 57;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `MAXLINESIZE` in binascii.c's quoted-printable encoder.
const QP_MAXLINESIZE: usize = 76;

/// Append exactly what Python's `base64.encodebytes(data)` returns:
/// standard alphabet with '=' padding, one "\n" after every 76 output
/// characters (57 input bytes) and after the final partial line. Empty input
/// appends nothing.
pub fn base64_encodebytes(data: &[u8], out: &mut Vec<u8>) {
    let lines = data.len().div_ceil(B64_MAXBINSIZE);
    out.reserve(data.len().div_ceil(3) * 4 + lines);
    for chunk in data.chunks(B64_MAXBINSIZE) {
        let mut groups = chunk.chunks_exact(3);
        for g in &mut groups {
            let n = (u32::from(g[0]) << 16) | (u32::from(g[1]) << 8) | u32::from(g[2]);
            out.push(B64_ALPHABET[((n >> 18) & 0x3f) as usize]);
            out.push(B64_ALPHABET[((n >> 12) & 0x3f) as usize]);
            out.push(B64_ALPHABET[((n >> 6) & 0x3f) as usize]);
            out.push(B64_ALPHABET[(n & 0x3f) as usize]);
        }
        match *groups.remainder() {
            [a] => {
                out.push(B64_ALPHABET[usize::from(a >> 2)]);
                out.push(B64_ALPHABET[usize::from((a & 0x03) << 4)]);
                out.extend_from_slice(b"==");
            }
            [a, b] => {
                out.push(B64_ALPHABET[usize::from(a >> 2)]);
                out.push(B64_ALPHABET[usize::from(((a & 0x03) << 4) | (b >> 4))]);
                out.push(B64_ALPHABET[usize::from((b & 0x0f) << 2)]);
                out.push(b'=');
            }
            _ => {}
        }
        out.push(b'\n');
    }
}

/// Value of a base64 alphabet character, or `None` for anything else
/// (including '=', which the decoder handles separately).
fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Python's `base64.decodebytes(text)`, i.e. CPython 3.11
/// `binascii.a2b_base64(text, strict_mode=False)`:
///
/// * characters outside the alphabet (newlines, spaces, bytes >= 0x80, ...)
///   are skipped;
/// * a '=' only counts once at least two data characters of the current
///   quad have been seen; enough pad characters to complete the quad end
///   decoding (anything after them is ignored), other '=' are skipped;
/// * leftover data characters that do not form a complete quad are an error
///   ("Incorrect padding", or the "1 more than a multiple of 4" message).
///
/// # Errors
///
/// Returns a short reason where Python raises `binascii.Error`.
pub fn base64_decodebytes(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut quad_pos: u32 = 0;
    let mut leftchar: u8 = 0;
    let mut pads: u32 = 0;
    for &c in text {
        if c == b'=' {
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let Some(v) = b64_value(c) else {
            continue;
        };
        pads = 0;
        match quad_pos {
            0 => {
                quad_pos = 1;
                leftchar = v;
            }
            1 => {
                quad_pos = 2;
                out.push((leftchar << 2) | (v >> 4));
                leftchar = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push((leftchar << 4) | (v >> 2));
                leftchar = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push((leftchar << 6) | v);
                leftchar = 0;
            }
        }
    }
    match quad_pos {
        0 => Ok(out),
        1 => Err(format!(
            "Invalid base64-encoded string: number of data characters ({}) \
             cannot be 1 more than a multiple of 4",
            out.len() / 3 * 4 + 1
        )),
        _ => Err("Incorrect padding".to_string()),
    }
}

/// Append exactly what CPython 3.11
/// `binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)`
/// returns (this is what `quopri.encodestring(data)` calls).
///
/// The algorithm mirrors `binascii_b2a_qp_impl` step by step, quirks
/// included:
/// * line ends are "\r\n" in the output if the first "\n" of the input is
///   preceded by "\r", otherwise "\n" (so line ends get normalised);
/// * bytes > 126, '=', control bytes other than "\t", "\r", "\n", and a
///   trailing " "/"\t" at the very end of the input become "=XX" (uppercase);
/// * '.' at the start of a line is encoded when followed by "\n", "\r", a NUL
///   byte, or the end of the input;
/// * a " " or "\t" written just before a hard line break is rewritten to
///   "=20"/"=09";
/// * a lone "\r" (not followed by "\n") is copied through unencoded;
/// * soft line breaks ("=" + line end) keep output lines under 76 chars.
pub fn qp_encode(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = data.len();
    // CRLF detection: only the first '\n' matters.
    let crlf = match data.iter().position(|&b| b == b'\n') {
        Some(p) => p > 0 && data[p - 1] == b'\r',
        None => false,
    };
    out.reserve(len + len / 8 + 4);

    let soft_break = |out: &mut Vec<u8>| {
        out.push(b'=');
        if crlf {
            out.push(b'\r');
        }
        out.push(b'\n');
    };

    let mut linelen: usize = 0;
    let mut i: usize = 0;
    while i < len {
        let c = data[i];
        // `databuf[in+1]`, with the end of the buffer reading as NUL (the
        // bytes object's terminator), which is what the C code relies on.
        let next = data.get(i + 1).copied();
        let at_last = i + 1 == len;
        let needs_quote = c > 126
            || c == b'='
            || (c == b'.' && linelen == 0 && matches!(next, None | Some(b'\n' | b'\r' | 0)))
            || ((c == b'\t' || c == b' ') && at_last)
            || (c < 33 && c != b'\r' && c != b'\n' && c != b'\t' && c != b' ');
        if needs_quote {
            if linelen + 3 >= QP_MAXLINESIZE {
                soft_break(out);
                linelen = 0;
            }
            out.push(b'=');
            out.push(HEX_UPPER[usize::from(c >> 4)]);
            out.push(HEX_UPPER[usize::from(c & 0x0f)]);
            i += 1;
            linelen += 3;
        } else if c == b'\n' || (c == b'\r' && next == Some(b'\n')) {
            // Hard line break.
            linelen = 0;
            // Protect against whitespace at the end of the line: look at
            // what was actually written last.
            if out.len() > start {
                let last_idx = out.len() - 1;
                let last = out[last_idx];
                if last == b' ' || last == b'\t' {
                    out[last_idx] = b'=';
                    out.push(HEX_UPPER[usize::from(last >> 4)]);
                    out.push(HEX_UPPER[usize::from(last & 0x0f)]);
                }
            }
            if crlf {
                out.push(b'\r');
            }
            out.push(b'\n');
            i += if c == b'\r' { 2 } else { 1 };
        } else {
            if !at_last && next != Some(b'\n') && linelen + 1 >= QP_MAXLINESIZE {
                soft_break(out);
                linelen = 0;
            }
            linelen += 1;
            out.push(c);
            i += 1;
        }
    }
}

fn is_hex_digit(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// CPython 3.11 `binascii.a2b_qp(text, header=False)` (what
/// `quopri.decodestring(text)` calls). Never fails:
/// * "=XX" with two hex digits (either case) decodes to the byte;
/// * "==" decodes to "=" (compatibility with an old broken encoder);
/// * "=" followed by "\n" is a soft break; "=" followed by "\r" skips
///   everything up to and including the next "\n" (or to the end);
/// * "=" at the very end is dropped; any other "=" is kept literally and the
///   following character is processed normally.
#[must_use]
pub fn qp_decode(text: &[u8]) -> Vec<u8> {
    let len = text.len();
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while i < len {
        if text[i] != b'=' {
            out.push(text[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i >= len {
            break;
        }
        let c = text[i];
        if c == b'\n' || c == b'\r' {
            if c != b'\n' {
                while i < len && text[i] != b'\n' {
                    i += 1;
                }
            }
            if i < len {
                i += 1;
            }
        } else if c == b'=' {
            out.push(b'=');
            i += 1;
        } else if i + 1 < len && is_hex_digit(c) && is_hex_digit(text[i + 1]) {
            out.push((hex_value(c) << 4) | hex_value(text[i + 1]));
            i += 2;
        } else {
            out.push(b'=');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with CPython 3.11.7: quopri.encodestring(x)
    const QP_ENCODE_VECTORS: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"hello", b"hello"),
        (b"hello world", b"hello world"),
        (b"a=b", b"a=3Db"),
        (b"==", b"=3D=3D"),
        (b"\x00abc", b"=00abc"),
        (b"\x00/tmp/.X11-unix/X0", b"=00/tmp/.X11-unix/X0"),
        (b"\x80\xff\xc3\xa9", b"=80=FF=C3=A9"),
        (b"\x7f~", b"=7F~"),
        (b"\x01\x1f\x1b", b"=01=1F=1B"),
        (b"end space ", b"end space=20"),
        (b"end tab\t", b"end tab=09"),
        (b" ", b"=20"),
        (b"\t", b"=09"),
        (b"  \t ", b"  \t=20"),
        (b"line \nnext", b"line=20\nnext"),
        (b"line\t\nnext", b"line=09\nnext"),
        (b"a \n\n", b"a=20\n\n"),
        (b"  \n  ", b" =20\n =20"),
        (b"\n", b"\n"),
        (b"\r\n", b"\r\n"),
        (b"\n\n", b"\n\n"),
        (b"a\nb\n", b"a\nb\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\nb\r\nc", b"a\nb\nc"),
        (b"a\r\nb\nc", b"a\r\nb\r\nc"),
        (b"lone\rcr", b"lone\rcr"),
        (b"\r", b"\r"),
        (b"x\r", b"x\r"),
        (b"sp \r\n", b"sp=20\r\n"),
        (b"sp \r\nx\n", b"sp=20\r\nx\r\n"),
        (b".", b"=2E"),
        (b".\n", b"=2E\n"),
        (b".\r\n", b"=2E\r\n"),
        (b".\x00", b"=2E=00"),
        (b".abc", b".abc"),
        (b"x\n.\n", b"x\n=2E\n"),
        (b"x\n.", b"x\n=2E"),
        (b"a.\n", b"a.\n"),
        (b"..\n", b"..\n"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\naa"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\naaaaaaaaaaaaaaaaaaaaaaaaa"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        (b"==============================", b"=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=\n=3D=3D=3D=3D=3D"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\n=3D"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x00\x00", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\n=00=00"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=\nbbbbb"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \n", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=20\n"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \r\ncccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=20\r\nccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc=\r\nccccccccccccccc"),
        (b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\ncccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\n", b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=\r\nbbbbb\r\nccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc=\r\nccccc\r\n"),
        (b"\xac\x84L\xbb\xbc\xab\x08v\x9b?\x19\xd0\xb7\x99+]?\x0fg\xa7\x01x\x99\x9a\xd4\xcdk\xec\xbf\xd3~\x1c\x84\xbd\x8e\xc1toM\xdb\x1c\xc0\x0f\xa8\xcf\xb90\xd4\xe1\xa9\x1e;\\\x1f\x94\xa6j\x05\xab\x08y\x7f\xb8\xbe\xda\x17J&\x81\x86\x05\xe8\x87E,z\xa0\xb2\xe0\xef\xc0\x18'\x93qP\xfc\xd2_^\x91\x1d\x1a\xe4\xab$\xc0\xbe\xd42\x93\x01\xb8bUo\xa5K\xd0&\xb1\xa2\xd9\x8d(\x15\xd3\xf3\x98\x98}\xd4S-\x9b\x9bqX\xde\xc4\xbeb\xd8\xec\r~\x036\xbaD\xa1\xb0y\xe8\xda\x0b\x1f7\xe0^\x0e\x10\x8e\x1b\xd6\x91g\x00\xe5\x91^]\x82\xc2\x15T2\x03\xabL\x925\xa7\xfe\xbd\xb0\x81\xbfoG\xc8\xb3P\x89\x05\xf7\xa2\xcc#|\xcd\xdd\x87\x94\x91U\xef\xf7\xec\xb7", b"=AC=84L=BB=BC=AB=08v=9B?=19=D0=B7=99+]?=0Fg=A7=01x=99=9A=D4=CDk=EC=BF=D3~=\n=1C=84=BD=8E=C1toM=DB=1C=C0=0F=A8=CF=B90=D4=E1=A9=1E;\\=1F=94=A6j=05=AB=08y=\n=7F=B8=BE=DA=17J&=81=86=05=E8=87E,z=A0=B2=E0=EF=C0=18'=93qP=FC=D2_^=91=1D=\n=1A=E4=AB$=C0=BE=D42=93=01=B8bUo=A5K=D0&=B1=A2=D9=8D(=15=D3=F3=98=98}=D4S-=\n=9B=9BqX=DE=C4=BEb=D8=EC\r~=036=BAD=A1=B0y=E8=DA=0B=1F7=E0^=0E=10=8E=1B=D6=\n=91g=00=E5=91^]=82=C2=15T2=03=ABL=925=A7=FE=BD=B0=81=BFoG=C8=B3P=89=05=F7=\n=A2=CC#|=CD=DD=87=94=91U=EF=F7=EC=B7"),
    ];

    // Generated with CPython 3.11.7: quopri.decodestring(x)
    const QP_DECODE_VECTORS: &[(&[u8], &[u8])] = &[
        (b"=", b""),
        (b"abc=", b"abc"),
        (b"=4", b"=4"),
        (b"=4G", b"=4G"),
        (b"=G4", b"=G4"),
        (b"==", b"="),
        (b"===", b"="),
        (b"=a1=B2=c3", b"\xa1\xb2\xc3"),
        (b"=\n", b""),
        (b"ab=\ncd", b"abcd"),
        (b"ab=\r\ncd", b"abcd"),
        (b"=\rabc\ndef", b"def"),
        (b"=\rabc", b""),
        (b"=0", b"=0"),
        (b"x=0", b"x=0"),
        (b"=3D", b"="),
        (b"=3d=", b"="),
        (b"caf=C3=A9", b"caf\xc3\xa9"),
        (b"_under_score", b"_under_score"),
        (b"=20\n", b" \n"),
        (b"\x80\xff", b"\x80\xff"),
        (b"=\x80\x80", b"=\x80\x80"),
    ];

    // Generated with CPython 3.11.7: base64.encodebytes(b64_input(n))
    const B64_ENCODE_VECTORS: &[(usize, &[u8])] = &[
        (0, b""),
        (1, b"Cw==\n"),
        (2, b"CzA=\n"),
        (3, b"CzBV\n"),
        (4, b"CzBVeg==\n"),
        (5, b"CzBVep8=\n"),
        (57, b"CzBVep/E6Q40WX6jyO0SN12Cp8zxFjtghqvQ9Ro/ZImv1PkeQ2iNstj9IkdskbbbASZLcJW63wQq\n"),
        (58, b"CzBVep/E6Q40WX6jyO0SN12Cp8zxFjtghqvQ9Ro/ZImv1PkeQ2iNstj9IkdskbbbASZLcJW63wQq\nTw==\n"),
        (76, b"CzBVep/E6Q40WX6jyO0SN12Cp8zxFjtghqvQ9Ro/ZImv1PkeQ2iNstj9IkdskbbbASZLcJW63wQq\nT3SZvuMILVN4ncLnDDFWfKHG6w==\n"),
        (100, b"CzBVep/E6Q40WX6jyO0SN12Cp8zxFjtghqvQ9Ro/ZImv1PkeQ2iNstj9IkdskbbbASZLcJW63wQq\nT3SZvuMILVN4ncLnDDFWfKHG6xA1Wn+lyu8UOV6DqM7zGD1ih6zR9xxBZg==\n"),
        (1000, b"CzBVep/E6Q40WX6jyO0SN12Cp8zxFjtghqvQ9Ro/ZImv1PkeQ2iNstj9IkdskbbbASZLcJW63wQq\nT3SZvuMILVN4ncLnDDFWfKHG6xA1Wn+lyu8UOV6DqM7zGD1ih6zR9xxBZouw1fogRWqPtNn+I0lu\nk7jdAidMcpe84QYrUHWbwOUKL1R5nsTpDjNYfaLH7RI3XIGmy/AWO2CFqs/0GT9kia7T+B1CaI2y\n1/whRmuRttsAJUpvlLrfBClOc5i94wgtUnecweYMMVZ7oMXqDzVaf6TJ7hM4XoOozfIXPGGHrNH2\nG0BlirDV+h9EaY6z2f4jSG2St9wCJ0xxlrvgBStQdZq/5AkuVHmew+gNMld9osfsETZbgKbL8BU6\nX4Spz/QZPmOIrdL4HUJnjLHW+yFGa5C12v8kSm+Uud4DKE1zmL3iByxRdpzB5gswVXqfxeoPNFl+\no8juEzhdgqfM8Rc8YYar0PUaQGWKr9T5HkNpjrPY/SJHbJK33AEmS3CVu+AFKk90mb7kCS5TeJ3C\n5w0yV3yhxusQNluApcrvFDlfhKnO8xg9Yoit0vccQWaLsdb7IEVqj7Ta/yRJbpO43QMoTXKXvOEG\nLFF2m8DlCi9Vep/E6Q4zWH6jyO0SN1yBp8zxFjtgharQ9Ro/ZImu0/keQ2iNstf8IkdskbbbACVL\ncJW63wQpTnSZvuMILVJ3ncLnDDFWe6DG6xA1Wn+kye8UOV6DqM3yGD1ih6zR9htBZouw1fofRGqP\ntNn+I0htk7jdAidMcZa84QYrUHWav+UKL1R5nsPoDjNYfaLH7BE3XIGmy/AVOmCFqs/0GT5jia7T\n+B1CZ4yy1/whRmuQtdsAJUpvlLneBClOc5i94gctUnecweYLMFZ7oMXqDzRZf6TJ7hM4XYKozfIX\nPGGGq9H2G0Bliq/U+h9EaY6z2P0jSG2St9wBJkxxlrvgBSpPdZq/5AkuU3iew+gNMld8ocfsETZb\ngKXK8BU6X4SpzvMZPmOIrdL3HEJnjLHW+yBFa5C12v8kSW6Uud4DKE1yl73iByxRdpvA5gswVXqf\nxOkPNFl+o8jtEjhdgqfM8RY7YYar0PUaP2SKr9T5HkNojbPY/SJHbJG23AEmS3CVut8FKk90mb7j\nCC5TeJ3C5wwxV3yhxusQNVqApcrvFDleg6nO8xg9Yoes0vccQWaLsNX7IEVqj7TZ/iRJbpO43QIn\nTXKXvOEGK1B2m8DlCi9UeZ/E6Q4zWH2iyO0SN1yBpsvxFjtgharP9Bo/ZImu0/gdQ2iNstf8IUZs\nkbbbACVKb5W63wQpTnOYvuMILVJ3nMHnDDFWe6DF6g==\n"),
    ];

    // Generated with CPython 3.11.7: base64.decodebytes(x); None = binascii.Error
    const B64_DECODE_VECTORS: &[(&[u8], Option<&[u8]>)] = &[
        (b"", Some(b"")),
        (b"\n", Some(b"")),
        (b"QQ==", Some(b"A")),
        (b"QQ==\n", Some(b"A")),
        (b"QQ", None),
        (b"Q", None),
        (b"QUJD", Some(b"ABC")),
        (b"QUJDRA", None),
        (b"QUJDRA=", None),
        (b"QUJDRA==", Some(b"ABCD")),
        (b"QU\nJD\nREVG", Some(b"ABCDEF")),
        (b"QU JD", Some(b"ABC")),
        (b"QQ==QUJD", Some(b"A")),
        (b"====", Some(b"")),
        (b"=QQ==", Some(b"A")),
        (b"QUJ=D", Some(b"AB")),
        (b"QQ=x=", Some(b"A\x0c")),
        (b"Q\x80Q==", Some(b"A")),
        (b"QUJD!@#", Some(b"ABC")),
        (b"QUJDR", None),
        (b"QUJDRUZH\r\n", Some(b"ABCEFG")),
        (b"QUJD=", Some(b"ABC")),
        (b"QUJD==QQ", None),
    ];

    /// Input pattern for `B64_ENCODE_VECTORS` (mirrored in the generator).
    fn b64_input(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 37 + 11 + (i >> 3)) & 0xff) as u8)
            .collect()
    }

    /// Tiny xorshift64 generator so the tests need no crates.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// Random bytes, biased toward the characters that exercise the
        /// special cases of both encodings.
        fn biased_bytes(&mut self, max_len: u64) -> Vec<u8> {
            const SPECIAL: &[u8] = b" \t\n\r=.\x00";
            let len = self.below(max_len + 1) as usize;
            (0..len)
                .map(|_| match self.below(8) {
                    0 | 1 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
                    2 => 0x80 | self.below(0x80) as u8,
                    3..=5 => b'a' + self.below(26) as u8,
                    _ => self.below(256) as u8,
                })
                .collect()
        }
    }

    fn qp(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        qp_encode(data, &mut out);
        out
    }

    fn b64(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        base64_encodebytes(data, &mut out);
        out
    }

    /// What `qp_decode(qp_encode(x))` yields: `x` with every line end
    /// ("\n", or "\r\n") rewritten to the style of the first one.
    fn normalize_line_ends(data: &[u8]) -> Vec<u8> {
        let crlf = match data.iter().position(|&b| b == b'\n') {
            Some(p) => p > 0 && data[p - 1] == b'\r',
            None => false,
        };
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if data[i] == b'\n' {
                out.extend_from_slice(eol);
                i += 1;
            } else if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
                out.extend_from_slice(eol);
                i += 2;
            } else {
                out.push(data[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn qp_encode_matches_python() {
        for (i, (input, expected)) in QP_ENCODE_VECTORS.iter().enumerate() {
            assert_eq!(
                qp(input),
                expected.to_vec(),
                "vector {i}: input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn qp_encode_appends_and_ignores_existing_output() {
        // A trailing space already in `out` must not be "protected" by a
        // newline at the start of `data`.
        let mut out = b"x ".to_vec();
        qp_encode(b"\nab", &mut out);
        assert_eq!(out, b"x \nab".to_vec());
        let mut out = b"prefix:".to_vec();
        qp_encode(b"\x00abc", &mut out);
        assert_eq!(out, b"prefix:=00abc".to_vec());
    }

    #[test]
    fn qp_decode_matches_python() {
        for (i, (input, expected)) in QP_DECODE_VECTORS.iter().enumerate() {
            assert_eq!(qp_decode(input), expected.to_vec(), "vector {i}");
        }
    }

    #[test]
    fn qp_decode_inverts_encode_vectors() {
        for (input, encoded) in QP_ENCODE_VECTORS {
            assert_eq!(qp_decode(encoded), normalize_line_ends(input));
        }
    }

    #[test]
    fn qp_round_trip_random() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let data = rng.biased_bytes(300);
            let enc = qp(&data);
            assert!(enc.iter().all(|&b| b < 0x80), "non-ASCII output");
            assert_eq!(
                qp_decode(&enc),
                normalize_line_ends(&data),
                "input {data:?}"
            );
        }
        // Inputs without line ends round-trip exactly (unix socket names).
        for _ in 0..5000 {
            let data: Vec<u8> = rng
                .biased_bytes(200)
                .into_iter()
                .filter(|&b| b != b'\n')
                .collect();
            assert_eq!(qp_decode(&qp(&data)), data);
        }
    }

    #[test]
    fn base64_encode_matches_python() {
        for (n, expected) in B64_ENCODE_VECTORS {
            assert_eq!(b64(&b64_input(*n)), expected.to_vec(), "length {n}");
            assert_eq!(
                base64_decodebytes(expected),
                Ok(b64_input(*n)),
                "length {n}"
            );
        }
    }

    #[test]
    fn base64_decode_matches_python() {
        for (input, expected) in B64_DECODE_VECTORS {
            let got = base64_decodebytes(input);
            match expected {
                Some(bytes) => assert_eq!(got, Ok(bytes.to_vec()), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} should fail, got {got:?}"),
            }
        }
        assert_eq!(
            base64_decodebytes(b"QQ"),
            Err("Incorrect padding".to_string())
        );
        assert_eq!(
            base64_decodebytes(b"QUJDR"),
            Err(
                "Invalid base64-encoded string: number of data characters (5) \
                 cannot be 1 more than a multiple of 4"
                    .to_string()
            )
        );
    }

    #[test]
    fn base64_round_trip_random() {
        let mut rng = XorShift(0x0123_4567_89AB_CDEF);
        for _ in 0..3000 {
            let data = rng.biased_bytes(400);
            let enc = b64(&data);
            // Shape: 76-char lines, each ending in "\n".
            if data.is_empty() {
                assert!(enc.is_empty());
            } else {
                assert_eq!(enc.last(), Some(&b'\n'));
                for line in enc[..enc.len() - 1].split(|&b| b == b'\n') {
                    assert!(line.len() <= 76 && line.len() % 4 == 0);
                }
            }
            assert_eq!(base64_decodebytes(&enc), Ok(data.clone()));
            // Also without the final newline, and with CRLF line ends.
            assert_eq!(
                base64_decodebytes(enc.strip_suffix(b"\n").unwrap_or(&enc)),
                Ok(data.clone())
            );
            let crlf: Vec<u8> = enc
                .iter()
                .flat_map(|&b| {
                    if b == b'\n' {
                        vec![b'\r', b'\n']
                    } else {
                        vec![b]
                    }
                })
                .collect();
            assert_eq!(base64_decodebytes(&crlf), Ok(data));
        }
    }

    #[test]
    fn decoders_never_panic() {
        let mut rng = XorShift(42);
        const ALPH: &[u8] = b"=\r\n \tAZaz09+/Qg=Ff3D";
        for _ in 0..5000 {
            let len = rng.below(64) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        rng.below(256) as u8
                    } else {
                        ALPH[rng.below(ALPH.len() as u64) as usize]
                    }
                })
                .collect();
            let _ = base64_decodebytes(&text);
            let _ = qp_decode(&text);
        }
    }
}
