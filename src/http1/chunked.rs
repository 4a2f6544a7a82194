//! Chunked bodies: the decoder (the server's, for publish bodies, and the
//! client's, for streams) and the size lines of chunks written.

use super::MAX_HEAD;

/// Longest chunk-size line, extensions included, and longest trailer section.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = MAX_HEAD;

/// Decodes a chunked body (RFC 9112, 7.1) as bytes arrive, in pieces of
/// any size, with CRLF required where the grammar has it: chunk sizes in hex,
/// extensions skipped, trailers read and dropped.
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
    /// Bytes of data decoded so far, against `limit`.
    total: u64,
    limit: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex digits of a size; the value so far and whether any digit came.
    Size {
        size: u64,
        digits: bool,
    },
    /// After the digits: spaces or tabs, before a `;` or CR.
    SizeWs {
        size: u64,
    },
    /// After a `;`: an extension, skipped until CR.
    Extension {
        size: u64,
    },
    /// A CR was read; LF must follow.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// What went wrong in a chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The data would pass the limit.
    TooLarge,
    Malformed(&'static str),
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::TooLarge => f.write_str("the chunked body is too large"),
            ChunkError::Malformed(why) => f.write_str(why),
        }
    }
}

impl Chunked {
    /// A decoder that refuses more than `limit` bytes of data.
    pub fn new(limit: u64) -> Chunked {
        Chunked {
            state: ChunkState::Size {
                size: 0,
                digits: false,
            },
            line: 0,
            total: 0,
            limit,
        }
    }

    /// The last chunk and the trailers have been read: the body is complete.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what it can of `input`, appending data to `out`. Returns how
    /// many bytes of `input` it used: all of them, unless the body ended
    /// within them (the rest belongs to the next message).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let b = input[i];
            if let Data { left } = self.state {
                let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 { DataCr } else { Data { left } };
                continue;
            }
            i += 1;
            self.state = match self.state {
                Size { size, digits } => {
                    self.count_line()?;
                    match (b as char).to_digit(16) {
                        Some(d) => Size {
                            size: size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(u64::from(d)))
                                .ok_or(ChunkError::TooLarge)?,
                            digits: true,
                        },
                        None if !digits => {
                            return Err(ChunkError::Malformed(
                                "a chunk size must start with a hex digit",
                            ))
                        }
                        None => after_size(size, b)?,
                    }
                }
                SizeWs { size } => {
                    self.count_line()?;
                    after_size(size, b)?
                }
                Extension { size } => {
                    self.count_line()?;
                    match b {
                        b'\r' => SizeLf { size },
                        b'\n' => {
                            return Err(ChunkError::Malformed(
                                "a chunk-size line must end with CRLF",
                            ))
                        }
                        b'\t' => Extension { size },
                        0..=31 | 127 => {
                            return Err(ChunkError::Malformed(
                                "a chunk extension has a control character",
                            ))
                        }
                        _ => Extension { size },
                    }
                }
                SizeLf { size } => {
                    if b != b'\n' {
                        return Err(ChunkError::Malformed(
                            "a chunk-size line must end with CRLF",
                        ));
                    }
                    self.line = 0;
                    if size == 0 {
                        TrailerStart
                    } else {
                        self.total = self.total.saturating_add(size);
                        if self.total > self.limit {
                            return Err(ChunkError::TooLarge);
                        }
                        Data { left: size }
                    }
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Size {
                    size: 0,
                    digits: false,
                },
                DataCr | DataLf => {
                    return Err(ChunkError::Malformed("chunk data must be followed by CRLF"))
                }
                TrailerStart | Trailer => {
                    self.line += 1;
                    if self.line > MAX_TRAILERS {
                        return Err(ChunkError::Malformed("the trailer section is too large"));
                    }
                    match b {
                        b'\r' => TrailerLf {
                            empty: self.state == TrailerStart,
                        },
                        b'\n' => {
                            return Err(ChunkError::Malformed("trailer lines must end with CRLF"))
                        }
                        _ => Trailer,
                    }
                }
                TrailerLf { empty } => match (b, empty) {
                    (b'\n', true) => Done,
                    (b'\n', false) => TrailerStart,
                    _ => return Err(ChunkError::Malformed("trailer lines must end with CRLF")),
                },
                Data { .. } | Done => unreachable!("handled above"),
            };
        }
        Ok(i)
    }

    fn count_line(&mut self) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(ChunkError::Malformed("a chunk-size line is too long"));
        }
        Ok(())
    }
}

/// The state after the digits of a chunk size, on byte `b`. Only
/// whitespace before a `;` may follow the digits (RFC 9112, 7.1.1): `5 6`
/// must not be read as 5 here and as 56 by a proxy in front.
fn after_size(size: u64, b: u8) -> Result<ChunkState, ChunkError> {
    match b {
        b'\r' => Ok(ChunkState::SizeLf { size }),
        b'\n' => Err(ChunkError::Malformed(
            "a chunk-size line must end with CRLF",
        )),
        b' ' | b'\t' => Ok(ChunkState::SizeWs { size }),
        b';' => Ok(ChunkState::Extension { size }),
        _ => Err(ChunkError::Malformed("a chunk size is hex digits")),
    }
}

/// Room for the size line of any chunk: 16 hex digits and CRLF.
pub const CHUNK_SIZE_ROOM: usize = 18;

/// Writes the size line of a chunk of `len` bytes at the end of `room`
/// (at least [`CHUNK_SIZE_ROOM`] bytes), and returns where it starts: the
/// body can be written right after it without being moved.
pub fn put_chunk_size(len: usize, room: &mut [u8]) -> usize {
    let line = format!("{len:x}\r\n");
    let start = room.len() - line.len();
    room[start..].copy_from_slice(line.as_bytes());
    start
}

/// The last chunk of a chunked body, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` whole, split at every offset, and byte by byte.
    fn chunked(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), ChunkError> {
        let run = |cuts: &[usize]| -> Result<(Vec<u8>, usize), ChunkError> {
            let mut d = Chunked::new(limit);
            let mut out = Vec::new();
            let mut from = 0;
            for &cut in cuts.iter().chain([input.len()].iter()) {
                let used = d.feed(&input[from..cut], &mut out)?;
                if d.done() {
                    return Ok((out, from + used));
                }
                assert_eq!(used, cut - from);
                from = cut;
            }
            Err(ChunkError::Malformed("incomplete"))
        };
        let whole = run(&[]);
        for cut in 0..=input.len() {
            assert_eq!(run(&[cut]), whole, "split at {cut}: {input:?}");
        }
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(run(&every), whole, "bytewise: {input:?}");
        whole
    }

    #[test]
    fn chunked_bodies() {
        let ok: Vec<(&[u8], &[u8], usize)> = vec![
            (b"0\r\n\r\n", b"", 5),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", 15),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
                b"hello world",
                26,
            ),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
            (b"00005\r\nhello\r\n000\r\n\r\n", b"hello", 21),
            // Extensions, with whitespace before them; trailers.
            (b"5;name=val\r\nhello\r\n0;x\r\n\r\n", b"hello", 26),
            (b"5 ;a=\"q;r\"\r\nhello\r\n0\r\n\r\n", b"hello", 24),
            (
                b"5\t\r\nhello\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
                b"hello",
                32,
            ),
        ];
        for (input, data, used) in ok {
            let (got, n) = chunked(input, 1000).unwrap();
            assert_eq!((got.as_slice(), n), (data, used), "{input:?}");
        }
        let bad: Vec<(&[u8], ChunkError)> = vec![
            (b"b\r\nhello world\r\n0\r\n\r\n", ChunkError::TooLarge),
            (b"ffffffffffffffffff\r\n", ChunkError::TooLarge),
            (
                b"x\r\n",
                ChunkError::Malformed("a chunk size must start with a hex digit"),
            ),
            (
                b"\r\n",
                ChunkError::Malformed("a chunk size must start with a hex digit"),
            ),
            (
                b"-5\r\n",
                ChunkError::Malformed("a chunk size must start with a hex digit"),
            ),
            (
                b"5x\r\n",
                ChunkError::Malformed("a chunk size is hex digits"),
            ),
            (
                b"5 6\r\nhello\r\n",
                ChunkError::Malformed("a chunk size is hex digits"),
            ),
            (
                b"5;a\x01\r\n",
                ChunkError::Malformed("a chunk extension has a control character"),
            ),
            (
                b"5\nhello\r\n",
                ChunkError::Malformed("a chunk-size line must end with CRLF"),
            ),
            (
                b"5\rhello",
                ChunkError::Malformed("a chunk-size line must end with CRLF"),
            ),
            (
                b"5;a\nb\r\n",
                ChunkError::Malformed("a chunk-size line must end with CRLF"),
            ),
            (
                b"3\r\nhello\r\n",
                ChunkError::Malformed("chunk data must be followed by CRLF"),
            ),
            (
                b"5\r\nhello\n0\r\n\r\n",
                ChunkError::Malformed("chunk data must be followed by CRLF"),
            ),
            (
                b"0\r\nX: y\n\r\n",
                ChunkError::Malformed("trailer lines must end with CRLF"),
            ),
            (
                b"0\r\n\n",
                ChunkError::Malformed("trailer lines must end with CRLF"),
            ),
            (
                b"0\r\n\rX",
                ChunkError::Malformed("trailer lines must end with CRLF"),
            ),
        ];
        for (input, err) in bad {
            assert_eq!(chunked(input, 10).map(|_| ()), Err(err), "{input:?}");
        }
        // Lines that never end are refused at the bound, not buffered.
        let mut endless = b"5;".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE));
        assert_eq!(
            Chunked::new(10).feed(&endless, &mut Vec::new()),
            Err(ChunkError::Malformed("a chunk-size line is too long"))
        );
        let mut endless = b"0\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_TRAILERS + 1));
        assert_eq!(
            Chunked::new(10).feed(&endless, &mut Vec::new()),
            Err(ChunkError::Malformed("the trailer section is too large"))
        );
        // A cut-off body is not done.
        let mut d = Chunked::new(100);
        d.feed(b"5\r\nhel", &mut Vec::new()).unwrap();
        assert!(!d.done());
    }
}
