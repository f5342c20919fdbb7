//! A pull parser for JSON that reads from any `Read` through a window, so
//! memory stays bounded by the largest single value, and that reports byte
//! offsets in its errors.
//!
//! Strings come back as bytes: `\udc80`..`\udcff` (lone low surrogates,
//! which is how [`super::writer`] prints bytes that are not UTF-8) turn
//! back into the bytes `0x80`..`0xff`; other lone surrogates are refused.

use std::io::Read;

pub struct JsonReader<'a> {
    src: Box<dyn Read + 'a>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Input offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// Decoded bytes of the last string.
    pub scratch: Vec<u8>,
    /// When set, consumed bytes are appended here (see [`Self::capture`]).
    capturing: Option<Vec<u8>>,
}

/// A parse error: what, and at which input byte.
#[derive(Debug)]
pub struct ParseError {
    pub offset: u64,
    pub msg: String,
}

pub type PResult<T> = Result<T, ParseError>;

/// A JSON number as written.
#[derive(Clone, Copy, Debug)]
pub enum Number {
    Int(i128),
    Float(f64),
}

const WINDOW: usize = 1 << 18;

/// Deepest nesting accepted in values that are skipped or captured.
const MAX_DEPTH: usize = 128;

impl<'a> JsonReader<'a> {
    pub fn new(src: impl Read + 'a) -> Self {
        JsonReader {
            src: Box::new(src),
            buf: vec![0; WINDOW],
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
            scratch: Vec::new(),
            capturing: None,
        }
    }

    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn error<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            offset: self.offset(),
            msg: msg.into(),
        })
    }

    /// Makes at least `need` unread bytes available, unless input ends.
    fn fill(&mut self, need: usize) -> PResult<bool> {
        if self.end - self.pos >= need {
            return Ok(true);
        }
        if let Some(c) = &mut self.capturing {
            c.extend_from_slice(&self.buf[..self.pos]);
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.base += self.pos as u64;
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < need {
            self.buf.resize(need.max(WINDOW), 0);
        }
        while self.end < need && !self.eof {
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return self.error(format!("read failed: {e}")),
            }
        }
        Ok(self.end - self.pos >= need)
    }

    /// The next byte that is not whitespace, without consuming it; `None`
    /// at the end of input.
    #[inline]
    pub fn peek(&mut self) -> PResult<Option<u8>> {
        while self.pos < self.end {
            let b = self.buf[self.pos];
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Ok(Some(b));
            }
            self.pos += 1;
        }
        self.peek_slow()
    }

    #[cold]
    fn peek_slow(&mut self) -> PResult<Option<u8>> {
        loop {
            while self.pos < self.end {
                match self.buf[self.pos] {
                    b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                    b => return Ok(Some(b)),
                }
            }
            if !self.fill(1)? {
                return Ok(None);
            }
        }
    }

    #[inline]
    fn peek_some(&mut self, what: &str) -> PResult<u8> {
        match self.peek()? {
            Some(b) => Ok(b),
            None => self.error(format!("input ends where {what} was expected")),
        }
    }

    #[inline]
    pub fn expect(&mut self, c: u8, what: &str) -> PResult<()> {
        // Fast path: the byte is next, or after one space.
        let b = &self.buf[self.pos..self.end];
        if b.first() == Some(&c) {
            self.pos += 1;
            return Ok(());
        }
        if b.len() >= 2 && b[0] == b' ' && b[1] == c {
            self.pos += 2;
            return Ok(());
        }
        self.expect_slow(c, what)
    }

    #[cold]
    fn expect_slow(&mut self, c: u8, what: &str) -> PResult<()> {
        let b = self.peek_some(what)?;
        if b != c {
            return self.error(format!("expected {what}, found {}", describe(b)));
        }
        self.pos += 1;
        Ok(())
    }

    /// After `{`: the next key (into `scratch`), or `false` at `}`.
    pub fn next_key(&mut self, first: &mut bool) -> PResult<bool> {
        let b = self.peek_some("a key or '}'")?;
        if b == b'}' {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return self.error(format!("expected ',' or '}}', found {}", describe(b)));
            }
            self.pos += 1;
        }
        *first = false;
        if self.peek_some("a key")? != b'"' {
            return self.error("expected a string key");
        }
        self.string()?;
        self.expect(b':', "':'")?;
        Ok(true)
    }

    /// Fast path for [`Self::next_key`] when the next key is likely known:
    /// if the input at this point is exactly `[,] "name":` (optional
    /// whitespace), consumes it and returns true; otherwise consumes nothing.
    #[inline]
    pub fn try_key(&mut self, first: &mut bool, name: &str) -> bool {
        let n = name.len();
        // ", " + quote + name + quote + ": " at most.
        if self.end - self.pos < n + 8 {
            return false;
        }
        let b = &self.buf[self.pos..self.end];
        let mut i = 0;
        if !*first {
            if b[0] != b',' {
                return false;
            }
            i = 1;
        }
        while matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
            if i + n + 4 > b.len() {
                return false;
            }
        }
        if b[i] != b'"'
            || b[i + 1 + n] != b'"'
            || !crate::image::schema::same(&b[i + 1..i + 1 + n], name.as_bytes())
        {
            return false;
        }
        i += n + 2;
        while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
        }
        if i >= b.len() || b[i] != b':' {
            return false;
        }
        self.pos += i + 1;
        *first = false;
        true
    }

    /// After `[`: whether another element follows (`false` at `]`).
    pub fn next_element(&mut self, first: &mut bool) -> PResult<bool> {
        let b = self.peek_some("a value or ']'")?;
        if b == b']' {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return self.error(format!("expected ',' or ']', found {}", describe(b)));
            }
            self.pos += 1;
        }
        *first = false;
        Ok(true)
    }

    /// Reads a string into `scratch`.
    pub fn string(&mut self) -> PResult<()> {
        self.expect(b'"', "a string")?;
        self.scratch.clear();
        loop {
            // Copy the plain run up to the next quote or backslash.
            let start = self.pos;
            let window = &self.buf[start..self.end];
            let run = memchr::memchr2(b'"', b'\\', window).unwrap_or(window.len());
            let plain = &window[..run];
            if let Some(bad) = plain.iter().position(|b| *b < 0x20) {
                self.pos = start + bad;
                return self.error(format!(
                    "control character 0x{:02x} inside a string",
                    plain[bad]
                ));
            }
            self.scratch.extend_from_slice(plain);
            self.pos = start + run;
            if self.pos == self.end {
                if !self.fill(1)? {
                    return self.error("input ends inside a string");
                }
                continue;
            }
            match self.buf[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => self.escape()?,
                b => return self.error(format!("control character 0x{b:02x} inside a string")),
            }
        }
    }

    fn escape(&mut self) -> PResult<()> {
        self.fill(12)?;
        let Some(&c) = self
            .buf
            .get(self.pos + 1)
            .filter(|_| self.pos + 1 < self.end)
        else {
            return self.error("input ends inside an escape");
        };
        let simple = match c {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return self.error(format!("bad escape \\{}", c as char)),
        };
        if let Some(s) = simple {
            self.scratch.push(s);
            self.pos += 2;
            return Ok(());
        }
        let u = self.hex4(self.pos + 2)?;
        self.pos += 6;
        let cp = match u {
            0xd800..=0xdbff => {
                let lo = if self.end - self.pos >= 6
                    && self.buf[self.pos] == b'\\'
                    && self.buf[self.pos + 1] == b'u'
                {
                    self.hex4(self.pos + 2)?
                } else {
                    0
                };
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return self.error("lone high surrogate in a string");
                }
                self.pos += 6;
                0x10000 + ((u32::from(u) - 0xd800) << 10) + (u32::from(lo) - 0xdc00)
            }
            0xdc80..=0xdcff => {
                // A byte that was not UTF-8, as the writer escapes it.
                self.scratch.push(u as u8);
                return Ok(());
            }
            0xdc00..=0xdfff => return self.error("lone low surrogate in a string"),
            _ => u32::from(u),
        };
        let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
        let mut b = [0u8; 4];
        self.scratch
            .extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
        Ok(())
    }

    fn hex4(&self, at: usize) -> PResult<u16> {
        if at + 4 > self.end {
            return self.error("input ends inside a \\u escape");
        }
        let mut v = 0u16;
        for &b in &self.buf[at..at + 4] {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return self.error("bad hex digit in a \\u escape"),
            };
            v = (v << 4) | u16::from(d);
        }
        Ok(v)
    }

    /// A plain non-negative integer (the common case in image JSON) that
    /// ends inside the window, consumed; `None` (nothing consumed) for
    /// anything else, which [`Self::number`] then handles.
    #[inline]
    pub fn try_u64(&mut self) -> Option<u64> {
        let b = &self.buf[self.pos..self.end];
        let mut i = usize::from(b.first() == Some(&b' '));
        let start = i;
        let mut v: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 19 {
            v = v * 10 + u64::from(b[i] - b'0');
            i += 1;
        }
        let len = i - start;
        if len == 0
            || i >= b.len()
            || matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'-' | b'+')
            || (len > 1 && b[start] == b'0')
        {
            return None;
        }
        self.pos += i;
        Some(v)
    }

    pub fn number(&mut self) -> PResult<Number> {
        self.peek_some("a number")?;
        // Fast path: a plain non-negative integer that ends inside the window.
        {
            let mut i = self.pos;
            let mut v: u64 = 0;
            while i < self.end && self.buf[i].is_ascii_digit() && i - self.pos < 19 {
                v = v * 10 + u64::from(self.buf[i] - b'0');
                i += 1;
            }
            let len = i - self.pos;
            if len > 0
                && i < self.end
                && !matches!(self.buf[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'-' | b'+')
                && (len == 1 || self.buf[self.pos] != b'0')
            {
                self.pos = i;
                return Ok(Number::Int(i128::from(v)));
            }
        }
        self.fill(64)?;
        let start = self.pos;
        let mut i = self.pos;
        let mut float = false;
        while i < self.end {
            match self.buf[i] {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            i += 1;
        }
        let text = std::str::from_utf8(&self.buf[start..i]).unwrap_or("");
        let bad = text.is_empty()
            || text.starts_with('+')
            || (text.len() > 1 && text.starts_with('0') && !float)
            || (text.len() > 2 && text.starts_with("-0") && !float);
        let n = if float || bad {
            text.parse::<f64>().ok().filter(|_| !bad).map(Number::Float)
        } else {
            text.parse::<i128>().ok().map(Number::Int)
        };
        match n {
            Some(n) => {
                self.pos = i;
                Ok(n)
            }
            None => self.error(format!("bad number {text:?}")),
        }
    }

    /// `true`, `false` or `null`.
    pub fn literal(&mut self) -> PResult<Option<bool>> {
        self.peek_some("a value")?;
        // Fast path: the whole word is in the window.
        if let Some(w) = self
            .buf
            .get(self.pos..self.pos + 5)
            .filter(|_| self.pos + 5 <= self.end)
        {
            if w[..4] == *b"true" {
                self.pos += 4;
                return Ok(Some(true));
            }
            if w == b"false" {
                self.pos += 5;
                return Ok(Some(false));
            }
        }
        self.fill(5)?;
        let rest = &self.buf[self.pos..self.end];
        for (word, v) in [
            (&b"true"[..], Some(true)),
            (b"false", Some(false)),
            (b"null", None),
        ] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return Ok(v);
            }
        }
        self.error(format!("unexpected {}", describe(rest[0])))
    }

    /// Skips one value of any type.
    pub fn skip_value(&mut self) -> PResult<()> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> PResult<()> {
        // Image JSON is shallow; a deep document is garbage, and refusing it
        // keeps the recursion off the end of the stack.
        if depth > MAX_DEPTH {
            return self.error(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        match self.peek_some("a value")? {
            b'{' => {
                self.pos += 1;
                let mut first = true;
                while self.next_key(&mut first)? {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            b'[' => {
                self.pos += 1;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => self.literal().map(|_| ()),
        }
    }

    /// Reads one value and returns its JSON text, to be parsed again later
    /// by a reader over that text.
    pub fn capture(&mut self) -> PResult<Vec<u8>> {
        self.peek_some("a value")?;
        let start = self.pos;
        self.capturing = Some(Vec::new());
        // `fill` moves the window; it saves bytes before `pos` into the
        // capture, so mark the start by dropping what precedes it now.
        self.buf.copy_within(start..self.end, 0);
        self.base += start as u64;
        self.end -= start;
        self.pos = 0;
        let r = self.skip_value();
        let mut c = self.capturing.take().unwrap_or_default();
        r?;
        c.extend_from_slice(&self.buf[..self.pos]);
        Ok(c)
    }

    /// Fails unless only whitespace is left.
    pub fn end(&mut self) -> PResult<()> {
        match self.peek()? {
            None => Ok(()),
            Some(b) => self.error(format!(
                "unexpected {} after the end of the document",
                describe(b)
            )),
        }
    }
}

fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_surrogate_escapes() {
        let mut r = JsonReader::new(&br#""a\u00e9\ud83d\ude00\udcff\n""#[..]);
        r.string().unwrap();
        assert_eq!(
            r.scratch,
            "aé😀".bytes().chain([0xff, b'\n']).collect::<Vec<_>>()
        );
        let mut r = JsonReader::new(&br#""\udc00""#[..]);
        assert!(r.string().is_err());
    }

    #[test]
    fn capture_returns_text() {
        let mut r = JsonReader::new(&br#"{"a": [1, {"b": "x"}], "c": 2}"#[..]);
        r.expect(b'{', "{").unwrap();
        let mut first = true;
        assert!(r.next_key(&mut first).unwrap());
        assert_eq!(r.capture().unwrap(), br#"[1, {"b": "x"}]"#);
        assert!(r.next_key(&mut first).unwrap());
        assert!(matches!(r.number().unwrap(), Number::Int(2)));
    }

    #[test]
    fn small_window_refills() {
        // A reader that hands out one byte at a time exercises every refill.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() || b.is_empty() {
                    return Ok(0);
                }
                b[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let text = br#"{"k": "\u00e9\udcff", "n": -12345678901234567890, "t": [true, null]}"#;
        let mut r = JsonReader::new(Slow(text));
        r.expect(b'{', "{").unwrap();
        let mut first = true;
        r.next_key(&mut first).unwrap();
        r.string().unwrap();
        assert_eq!(r.scratch, vec![0xc3, 0xa9, 0xff]);
        r.next_key(&mut first).unwrap();
        assert!(matches!(
            r.number().unwrap(),
            Number::Int(-12345678901234567890)
        ));
        r.next_key(&mut first).unwrap();
        assert_eq!(r.capture().unwrap(), b"[true, null]");
        assert!(!r.next_key(&mut first).unwrap());
        r.end().unwrap();
    }
}
