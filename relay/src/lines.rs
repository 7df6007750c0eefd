//! Reading CRLF-terminated lines strictly. A line whose only line break is
//! its final CRLF is a line; any other CR or LF makes it a [`Line::BareNewline`]
//! (SMTP smuggling: the relay accepts only what every next hop reads the
//! same way). The parser we use for commands lets bare LF through, so this
//! check comes first.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

const READ_CHUNK: usize = 16 * 1024;

pub enum Line<'a> {
    /// The line including its CRLF.
    Ok(&'a [u8]),
    /// A CR or LF other than the final CRLF.
    BareNewline,
    /// Longer than the limit; the rest of it was discarded.
    TooLong,
}

pub struct LineReader<S> {
    stream: S,
    /// What was received: `buf[start..]` is not yet returned as lines. Read
    /// into its spare capacity, so that nothing is zeroed first.
    buf: Vec<u8>,
    start: usize,
    /// Discarding the rest of an over-long line.
    discarding: bool,
}

impl<S: AsyncRead + Unpin> LineReader<S> {
    pub fn new(stream: S) -> Self {
        LineReader {
            stream,
            buf: Vec::new(),
            start: 0,
            discarding: false,
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Forgets what was received but not yet read: after STARTTLS, plaintext
    /// sent behind the command must not be taken as if it came encrypted.
    pub fn discard_buffered(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.discarding = false;
    }

    /// Bytes received but not yet returned as lines (a pipelining client's
    /// next commands).
    pub fn has_buffered(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Whether a whole line is already received, so [`LineReader::next_line`]
    /// returns without waiting (and needs no timeout).
    pub fn has_line(&self) -> bool {
        memchr::memchr(b'\n', &self.buf[self.start..]).is_some()
    }

    /// The next line, at most `max` bytes with its CRLF; `None` at end of stream.
    pub async fn next_line(&mut self, max: usize) -> io::Result<Option<Line<'_>>> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let line_start = self.start;
                let line_end = self.start + pos + 1;
                self.start = line_end;
                if std::mem::take(&mut self.discarding) || line_end - line_start > max {
                    return Ok(Some(Line::TooLong));
                }
                let line = &self.buf[line_start..line_end];
                let body = &line[..line.len() - 1];
                let strict = body.last() == Some(&b'\r')
                    && memchr::memchr2(b'\r', b'\n', &body[..body.len() - 1]).is_none();
                return Ok(Some(if strict {
                    Line::Ok(line)
                } else {
                    Line::BareNewline
                }));
            }
            if self.buf.len() - self.start > max {
                // No line break within the limit: drop what we have and keep
                // discarding up to the next LF.
                self.discarding = true;
                self.buf.clear();
                self.start = 0;
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(READ_CHUNK);
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input);
        let mut out = Vec::new();
        while let Some(l) = r.next_line(max).await.unwrap() {
            out.push(match l {
                Line::Ok(b) => String::from_utf8_lossy(b).into_owned(),
                Line::BareNewline => "BARE".into(),
                Line::TooLong => "LONG".into(),
            });
        }
        out
    }

    #[tokio::test]
    async fn strict_crlf() {
        assert_eq!(
            lines(b"HELO a\r\nNOOP\r\n", 100).await,
            ["HELO a\r\n", "NOOP\r\n"]
        );
        assert_eq!(lines(b"HELO a\nNOOP\r\n", 100).await, ["BARE", "NOOP\r\n"]);
        assert_eq!(
            lines(b"a\rb\r\n.\n\r\n", 100).await,
            ["BARE", "BARE", "\r\n"]
        );
        assert_eq!(lines(b"partial", 100).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn long_lines_are_discarded_whole() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\r\nok\r\n");
        assert_eq!(lines(&input, 10).await, ["LONG", "ok\r\n"]);
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\r\nok\r\n");
        assert_eq!(lines(&input, 1000).await, ["LONG", "ok\r\n"]);
    }
}
