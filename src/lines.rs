//! Bytes to lines, for programs' output, followed files and `ssed publish
//! --lines`: split on LF, a trailing CR removed, invalid UTF-8 replaced,
//! and no line held longer than a limit (the rest is left out, and the
//! line says how much).

use std::io::{self, BufRead, BufReader, Read};

/// Bytes read at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Calls `line` for each line read from `r` until it ends: split on LF, a
/// trailing CR removed, invalid UTF-8 replaced, at most `max` bytes (a
/// longer line is cut and says how much was left out).
pub fn each_line(r: impl Read, max: usize, mut line: impl FnMut(String)) {
    let mut reader = BufReader::with_capacity(READ_CHUNK, r);
    let mut lines = Lines::new(max);
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let n = chunk.len();
        lines.feed(chunk, &mut line);
        reader.consume(n);
    }
    lines.finish(&mut line);
}

/// Splits bytes into lines as they come, holding at most `max` bytes of
/// the line being read.
pub struct Lines {
    max: usize,
    line: Vec<u8>,
    /// Bytes of the current line past `max`, left out.
    over: usize,
    /// The last byte read of the current line was a CR (kept or not).
    cr: bool,
}

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            max,
            line: Vec::new(),
            over: 0,
            cr: false,
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(String)) {
        while !bytes.is_empty() {
            let (piece, ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            let room = self.max.saturating_sub(self.line.len());
            let kept = piece.len().min(room);
            self.line.extend_from_slice(&piece[..kept]);
            self.over += piece.len() - kept;
            if let Some(&last) = piece.last() {
                self.cr = last == b'\r';
            }
            bytes = &bytes[piece.len() + usize::from(ends)..];
            if ends {
                self.emit(out);
            }
        }
    }

    /// The end of the input: a last line without LF is a line too.
    pub fn finish(&mut self, out: &mut impl FnMut(String)) {
        if !self.line.is_empty() || self.over > 0 {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut impl FnMut(String)) {
        // A CR that ends the line is not part of it, kept or left out.
        if self.cr {
            if self.over > 0 {
                self.over -= 1;
            } else {
                self.line.pop();
            }
        }
        let whole = String::from_utf8_lossy(&self.line);
        let text = if self.over == 0 && whole.len() <= self.max {
            whole.into_owned()
        } else {
            self.cut()
        };
        self.line.clear();
        self.over = 0;
        self.cr = false;
        out(text);
    }

    /// The line too long to keep whole (as read, or once invalid bytes
    /// become U+FFFD): what fits in `max` bytes with the marker that says
    /// how many bytes read were left out. Only a limit smaller than the
    /// marker itself is exceeded, by the marker alone.
    fn cut(&self) -> String {
        let read = self.line.len() + self.over;
        // The marker is never longer than with every byte left out.
        let budget = self.max.saturating_sub(marker(read).len());
        let mut text = String::with_capacity(budget);
        let mut kept = 0;
        'fill: for chunk in self.line.utf8_chunks() {
            for c in chunk.valid().chars() {
                if text.len() + c.len_utf8() > budget {
                    break 'fill;
                }
                text.push(c);
                kept += c.len_utf8();
            }
            if !chunk.invalid().is_empty() {
                if text.len() + '\u{FFFD}'.len_utf8() > budget {
                    break;
                }
                text.push('\u{FFFD}');
                kept += chunk.invalid().len();
            }
        }
        text.push_str(&marker(read - kept));
        text
    }
}

/// What ends a cut line.
fn marker(left_out: usize) -> String {
    format!(" [cut: {left_out} more bytes]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[&[u8]], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = Lines::new(max);
        for piece in input {
            lines.feed(piece, &mut |l| out.push(l));
        }
        lines.finish(&mut |l| out.push(l));
        out
    }

    #[test]
    fn lines() {
        assert_eq!(split(&[b"a\nb\r\n", b"c"], 100), ["a", "b", "c"]);
        assert_eq!(split(&[b"a", b"b\n", b"\n"], 100), ["ab", ""]);
        assert_eq!(split(&[b"a\r", b"\nb\r", b"c\r\r\n"], 100), ["a", "b\rc\r"]);
        assert_eq!(split(&[b"\xff\n"], 100), ["\u{FFFD}"]);
        // 40 bytes in 30: 9 kept, and the marker.
        let forty = b"0123456789012345678901234567890123456789";
        let cut = "012345678 [cut: 31 more bytes]";
        assert_eq!(split(&[forty, b"\nxy\n"], 30), [cut, "xy"]);
        assert_eq!(split(&[&forty[..15], &forty[15..]], 30), [cut]);
        // Exactly the limit is whole; a CR past it is not counted.
        assert_eq!(
            split(&[&forty[..30], b"\r\n"], 30),
            ["012345678901234567890123456789"]
        );
        // Invalid bytes grow threefold as U+FFFD: cut to fit, never
        // splitting a character, counting bytes as read.
        let bad = [0xffu8; 20];
        let cut = split(&[&bad, b"\n"], 30);
        assert_eq!(cut, ["\u{FFFD}\u{FFFD}\u{FFFD} [cut: 17 more bytes]"]);
        assert!(cut[0].len() <= 30);
        assert_eq!(
            split(&["\u{e9}".repeat(20).as_bytes(), b"\n"], 30),
            ["\u{e9}\u{e9}\u{e9}\u{e9} [cut: 32 more bytes]"]
        );
        assert!(split(&[], 4).is_empty());
    }
}
