//! RESP2, the Redis protocol: commands out, replies in, with limits.
//!
//! A reply is read with a budget: no bulk string longer than
//! [`Limits::bulk`], no array longer than [`Limits::items`] nor deeper than
//! [`Limits::depth`], and no more than [`Limits::total`] bytes in all. A
//! server that sends more, or something that is not RESP (an HTTP server
//! on the wrong port), is an error, never a panic nor unbounded memory.

use std::io::{self, BufRead, Read};

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the whole line, code first.
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` and n bytes, or `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` and n replies, or `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bytes of a bulk string, or of a simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            Reply::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string as UTF-8 text.
    pub fn text(&self) -> Option<&str> {
        self.bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The elements of an array (an empty slice for a null array).
    pub fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            Reply::Array(None) => Some(&[]),
            _ => None,
        }
    }

    /// An integer, or a string holding one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => self.text().and_then(|t| t.parse().ok()),
        }
    }
}

/// How much one reply may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub bulk: usize,
    pub items: usize,
    pub depth: usize,
    pub total: usize,
}

/// A command as RESP: an array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The longest line of a reply (a type byte, a number or an error).
const MAX_LINE: usize = 4096;

/// Reads one reply from `r` within `limits`.
pub fn read(r: &mut impl BufRead, limits: &Limits) -> io::Result<Reply> {
    let mut budget = limits.total;
    read_value(r, limits, 0, &mut budget).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ),
        _ => e,
    })
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn read_value(
    r: &mut impl BufRead,
    limits: &Limits,
    depth: usize,
    budget: &mut usize,
) -> io::Result<Reply> {
    let line = read_line(r, budget)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(bad("an empty line where a reply was expected"));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Int(number(rest)?)),
        b'$' => {
            let n = number(rest)?;
            if n == -1 {
                return Ok(Reply::Bulk(None));
            }
            let n = usize::try_from(n).map_err(|_| bad(format!("a bulk length of {n}")))?;
            if n > limits.bulk || n + 2 > *budget {
                return Err(bad(format!(
                    "a reply of {n} bytes, more than the {} allowed",
                    limits.bulk.min(*budget)
                )));
            }
            *budget -= n + 2;
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(bad("a bulk string not followed by CRLF"));
            }
            data.truncate(n);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let n = number(rest)?;
            if n == -1 {
                return Ok(Reply::Array(None));
            }
            let n = usize::try_from(n).map_err(|_| bad(format!("an array length of {n}")))?;
            if n > limits.items {
                return Err(bad(format!(
                    "an array of {n} replies, more than the {} allowed",
                    limits.items
                )));
            }
            if depth + 1 > limits.depth {
                return Err(bad("replies nested deeper than expected"));
            }
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(read_value(r, limits, depth + 1, budget)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(bad(format!(
            "not a Redis reply: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        ))),
    }
}

/// One CRLF-ended line, without its CRLF, at most [`MAX_LINE`] bytes.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let limit = MAX_LINE.min(*budget) as u64;
    r.take(limit + 1).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(if line.len() as u64 > limit {
            bad("a reply line longer than allowed")
        } else if line.ends_with(b"\n") {
            bad("a reply line ended by LF alone")
        } else {
            io::ErrorKind::UnexpectedEof.into()
        });
    }
    *budget -= line.len();
    line.truncate(line.len() - 2);
    Ok(line)
}

fn number(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "{:?} is not a number",
                String::from_utf8_lossy(digits)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        bulk: 16,
        items: 4,
        depth: 3,
        total: 200,
    };

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read(&mut io::BufReader::new(bytes), &LIMITS)
    }

    fn parse_split(bytes: &[u8]) -> io::Result<Reply> {
        // One byte a read, as a slow socket gives it.
        struct Drip<'a>(&'a [u8]);
        impl Read for Drip<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        read(&mut io::BufReader::with_capacity(1, Drip(bytes)), &LIMITS)
    }

    #[test]
    fn commands() {
        assert_eq!(
            command(&[b"SET", b"k", b"a b\r\n"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na b\r\n\r\n"
        );
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn replies() {
        let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (
                b"-WRONGPASS invalid\r\n",
                Reply::Error("WRONGPASS invalid".into()),
            ),
            (b":-7\r\n", Reply::Int(-7)),
            (b"$5\r\nhe\r\nl\r\n", bulk("he\r\nl")),
            (b"$0\r\n\r\n", bulk("")),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (
                b"*2\r\n*1\r\n$2\r\nid\r\n:1\r\n",
                Reply::Array(Some(vec![
                    Reply::Array(Some(vec![bulk("id")])),
                    Reply::Int(1),
                ])),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                &parse(bytes).unwrap(),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(&parse_split(bytes).unwrap(), want);
        }
        assert_eq!(bulk("12").int(), Some(12));
        assert_eq!(Reply::Array(None).items(), Some(&[][..]));
    }

    #[test]
    fn what_is_not_redis_or_too_much_is_an_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"HTTP/1.1 400 Bad Request\r\n", "not a Redis reply"),
            (b"$17\r\n", "a reply of 17 bytes, more than the 16 allowed"),
            (b"*5\r\n", "an array of 5 replies, more than the 4 allowed"),
            (
                b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
                "replies nested deeper than expected",
            ),
            (b"$-2\r\n", "a bulk length of -2"),
            (b":x\r\n", "\"x\" is not a number"),
            (b"$2\r\nabcd", "a bulk string not followed by CRLF"),
            (b"+OK\n", "a reply line ended by LF alone"),
            (b"\r\n", "an empty line"),
        ];
        for (bytes, why) in cases {
            let err = parse(bytes).unwrap_err();
            assert!(
                err.to_string().contains(why),
                "{err} for {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A line without end, and a reply cut short.
        let long = [b"+".as_slice(), &[b'x'; MAX_LINE + 10]].concat();
        assert!(parse(&long).is_err());
        assert_eq!(
            parse(b"$5\r\nab").unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(parse(b"").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        // The total budget holds across an array: 4 bulks of 16 bytes and
        // their heads are more than 80 bytes.
        let many = b"*4\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789abcdef\r\n";
        let small = Limits {
            total: 80,
            ..LIMITS
        };
        assert!(read(&mut io::BufReader::new(&many[..]), &small).is_err());
        assert!(parse(many).is_ok());
    }
}
