#![allow(dead_code)]
// Shared by the fuzz targets (included with `#[path]`): the same checks as
// tests/fuzz_regressions.rs.

use crit::image::source::Source;
use crit::json::image::{decode, encode, DecodeOpts};
use crit::json::reader::JsonReader;
use crit::json::writer::JsonWriter;

/// Decodes `img` to JSON, or `None` if decode refuses it.
pub fn to_json(img: &[u8], pretty: bool, nopl: bool) -> Option<Vec<u8>> {
    let mut src = Source::from_slice("fuzz.img", img);
    let mut w = JsonWriter::new(Vec::new(), pretty);
    decode(&mut src, &mut w, DecodeOpts { pretty, nopl }).ok()?;
    Some(w.finish().expect("writing to a Vec cannot fail"))
}

/// Encodes JSON to image bytes, or `None` if encode refuses it.
pub fn to_image(json: &[u8]) -> Option<Vec<u8>> {
    let mut r = JsonReader::new(json);
    let mut out = Vec::new();
    encode(&mut r, "fuzz.json", &mut out).ok()?;
    Some(out)
}

/// With CRIT_FUZZ_LAX set, images whose JSON has unknown fields are only
/// checked for panics and for encode accepting decode's JSON, not for the
/// second decode being identical (a known issue: unknown and repeated
/// fields come back in another order), so that fuzzing finds other bugs.
fn lax() -> bool {
    static LAX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LAX.get_or_init(|| std::env::var_os("CRIT_FUZZ_LAX").is_some())
}

fn has_unknown(json: &[u8]) -> bool {
    json.windows(20).any(|w| w == b"\"__unknown_fields__\"")
}

/// Arbitrary bytes as an image: decode must not panic; what it accepts
/// must encode, and the encoded image must decode to the same JSON.
pub fn check_image(data: &[u8]) {
    // The payload-free form only has to not panic.
    let _ = to_json(data, true, true);
    for pretty in [false, true] {
        let Some(json) = to_json(data, pretty, false) else {
            continue;
        };
        let img = to_image(&json).unwrap_or_else(|| {
            let mut r = JsonReader::new(&json[..]);
            let e = encode(&mut r, "fuzz.json", &mut Vec::new()).unwrap_err();
            panic!("decode accepted the input (pretty={pretty}) but encode refused its JSON: {e}")
        });
        let again = to_json(&img, pretty, false)
            .unwrap_or_else(|| panic!("the re-encoded image does not decode (pretty={pretty})"));
        if lax() && has_unknown(&json) {
            continue;
        }
        assert!(
            json == again,
            "decode(encode(decode(x))) != decode(x) (pretty={pretty}):\n{}\n{}",
            String::from_utf8_lossy(&json),
            String::from_utf8_lossy(&again)
        );
    }
}

/// Arbitrary bytes as JSON: encode must not panic; what it accepts must
/// decode, and decode then encode must give the same bytes.
pub fn check_json(data: &[u8]) {
    let Some(img) = to_image(data) else {
        return;
    };
    for pretty in [false, true] {
        let json = to_json(&img, pretty, false).unwrap_or_else(|| {
            let mut src = Source::from_slice("fuzz.img", &img);
            let mut w = JsonWriter::new(Vec::new(), pretty);
            let e = decode(
                &mut src,
                &mut w,
                DecodeOpts {
                    pretty,
                    nopl: false,
                },
            )
            .unwrap_err();
            panic!("encode accepted the JSON but its image does not decode (pretty={pretty}): {e}")
        });
        let img2 = to_image(&json).unwrap_or_else(|| {
            panic!(
                "encode refused decode's JSON (pretty={pretty}): {}",
                String::from_utf8_lossy(&json)
            )
        });
        if lax() && has_unknown(&json) {
            continue;
        }
        assert!(
            img == img2,
            "encode(decode(encode(j))) != encode(j) (pretty={pretty})"
        );
    }
}
