//! A small binary encoding for table shards: varint lengths, UTF-8 strings.
//! Reading never panics: every malformed input is a [`DecodeError`].

use std::fmt;

#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        self.bool(s.is_some());
        if let Some(s) = s {
            self.str(s);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn err<T>(&self, what: &str) -> Result<T, DecodeError> {
        Err(DecodeError(format!("{what} at byte {}", self.pos)))
    }

    pub fn expect(&mut self, magic: &[u8]) -> Result<(), DecodeError> {
        match self.buf.get(self.pos..self.pos + magic.len()) {
            Some(m) if m == magic => {
                self.pos += magic.len();
                Ok(())
            }
            _ => self.err("bad magic"),
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.err("truncated"),
        }
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.err("bad boolean"),
        }
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.err("varint too long")
    }

    /// A count of items that each take at least one byte: never more than
    /// the bytes left, so a corrupt count cannot make us allocate wildly.
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return self.err("count larger than the data");
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.varint()?;
        let end = self.pos as u64 + len;
        if end > self.buf.len() as u64 {
            return self.err("string past the end");
        }
        let bytes = &self.buf[self.pos..end as usize];
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                self.pos = end as usize;
                Ok(s)
            }
            Err(_) => self.err("invalid UTF-8"),
        }
    }

    pub fn opt_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        if self.bool()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            self.err("trailing bytes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::default();
        w.varint(0);
        w.varint(300);
        w.varint(u64::MAX);
        w.str("héllo");
        w.opt_str(None);
        w.opt_str(Some("x"));
        w.bool(true);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.varint().unwrap(), 0);
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.varint().unwrap(), u64::MAX);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.opt_str().unwrap(), None);
        assert_eq!(r.opt_str().unwrap(), Some("x"));
        assert!(r.bool().unwrap());
        r.finish().unwrap();
        for cut in 0..w.buf.len() {
            let mut r = Reader::new(&w.buf[..cut]);
            let all = (|| {
                r.varint()?;
                r.varint()?;
                r.varint()?;
                r.str()?;
                r.opt_str()?;
                r.opt_str()?;
                r.bool()
            })();
            assert!(all.is_err(), "cut at {cut}");
        }
    }
}
