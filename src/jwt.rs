//! Signed tokens: JSON Web Tokens (RFC 7519) signed with HMAC-SHA256
//! (`HS256`, RFC 7518 section 3.2), and the grants they carry.
//!
//! A token is `HEADER.PAYLOAD.SIGNATURE`, each part base64url without
//! padding. Only `HS256` is accepted: the header is read first for its
//! `alg`, the signature is checked (RustCrypto's `hmac`, in constant time)
//! before anything of the payload is believed, and then its claims: `exp`
//! and `nbf`, `sub`, and `ssed`, the grants:
//! `{"subscribe": [patterns], "publish": [patterns], "admin": bool}`.
//!
//! `exp` is exact: a token is refused from that second on, and a stream
//! opened with it ends then (so a token is never used past its end).
//! `nbf` allows [`NBF_LEEWAY`] for an issuer whose clock runs a little
//! ahead of this host's.
//!
//! Everything here is pure: bytes in, claims or a refusal out, with the
//! time passed in.

use crate::names::Pattern;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The longest token read: longer ones are refused unread.
pub const MAX_TOKEN: usize = 8 * 1024;

/// The shortest key: RFC 7518 asks for a key at least as long as the hash
/// (256 bits).
pub const MIN_KEY: usize = 32;

/// How far `nbf` may be ahead of this host's clock.
pub const NBF_LEEWAY: u64 = 60;

/// The largest key file read: a key is a few dozen bytes.
pub const MAX_KEY_FILE: u64 = 4096;

/// Patterns one token may carry, for each grant.
const MAX_PATTERNS: usize = 256;

/// The key tokens are signed with (`--token-key`). Never printed.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// A key of at least [`MIN_KEY`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Key, String> {
        if bytes.len() < MIN_KEY {
            return Err(format!(
                "a token key needs at least {MIN_KEY} bytes (256 bits, RFC 7518), not {}; make one with: head -c 32 /dev/urandom | base64",
                bytes.len()
            ));
        }
        Ok(Key(bytes.to_vec()))
    }

    /// A key from a file (`--token-key-file`, a systemd credential): at
    /// most [`MAX_KEY_FILE`] bytes read, one trailing newline (`\n` or
    /// `\r\n`) dropped, as `echo` and editors leave.
    pub fn from_file(path: &str) -> Result<Key, String> {
        use std::io::Read;
        if path.is_empty() {
            return Err("expected a file".into());
        }
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(format!(
                "the file is longer than {MAX_KEY_FILE} bytes; a key is a few dozen"
            ));
        }
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Key::new(&bytes)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(*** {} bytes)", self.0.len())
    }
}

/// What a valid token says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    /// Who (for the access log).
    pub sub: Option<String>,
    /// Its end, in seconds since the epoch.
    pub exp: Option<u64>,
    pub grants: Grants,
}

/// What a token lets its bearer do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub subscribe: Vec<Pattern>,
    pub publish: Vec<Pattern>,
    /// `/metrics`, and every topic in `/topics`.
    pub admin: bool,
}

impl Grants {
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(topic))
    }

    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }
}

/// Why a token is refused (401), in one sentence each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts of JSON, or claims of the wrong type.
    Malformed(String),
    /// `alg` is not `HS256` (`none` among them).
    Algorithm(String),
    /// The signature is not this key's over these bytes: a wrong key, or
    /// a changed header or payload.
    Signature,
    Expired {
        exp: u64,
        now: u64,
    },
    NotYet {
        nbf: u64,
        now: u64,
    },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Malformed(why) => write!(f, "the token is malformed: {why}"),
            Invalid::Algorithm(alg) => {
                write!(f, "the token is signed with {alg}; only HS256 is accepted")
            }
            Invalid::Signature => write!(
                f,
                "the token's signature does not match: another key signed it, or it was changed"
            ),
            Invalid::Expired { exp, now } => write!(
                f,
                "the token expired {} s ago (exp {exp})",
                now.saturating_sub(*exp)
            ),
            Invalid::NotYet { nbf, now } => write!(
                f,
                "the token is not valid for another {} s (nbf {nbf})",
                nbf.saturating_sub(*now)
            ),
        }
    }
}

/// Whether `text` has the shape of a JSON Web Token (three parts): such a
/// credential is checked as one, never compared with a static token.
pub fn looks_like_jwt(text: &str) -> bool {
    text.bytes().filter(|b| *b == b'.').count() == 2
}

/// Checks `token` against `key` at `now` (seconds since the epoch).
pub fn verify(token: &str, key: &Key, now: u64) -> Result<Claims, Invalid> {
    let malformed = |why: &str| Invalid::Malformed(why.to_string());
    if token.len() > MAX_TOKEN {
        return Err(Invalid::Malformed(format!("longer than {MAX_TOKEN} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three parts separated by dots"));
    };
    let header: Value = decode(head)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("its header is not base64url-encoded JSON"))?;
    let Value::Object(header) = header else {
        return Err(malformed("its header is not a JSON object"));
    };
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => {}
        Some(Value::String(alg)) => {
            return Err(Invalid::Algorithm(alg.chars().take(32).collect::<String>()))
        }
        _ => return Err(malformed("its header names no algorithm (alg)")),
    }
    // Extensions this reader does not know must not be ignored (RFC 7515,
    // section 4.1.11).
    if header.contains_key("crit") {
        return Err(malformed("its header has crit extensions"));
    }
    let sig = decode(sig).ok_or_else(|| malformed("its signature is not base64url"))?;
    let mut mac = key.mac();
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    // Constant time: `verify_slice` compares without stopping early.
    mac.verify_slice(&sig).map_err(|_| Invalid::Signature)?;
    let payload: Value = decode(body)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("its payload is not base64url-encoded JSON"))?;
    let Value::Object(claims) = payload else {
        return Err(malformed("its payload is not a JSON object"));
    };
    let exp = time(&claims, "exp")?;
    let nbf = time(&claims, "nbf")?;
    if let Some(exp) = exp {
        if now >= exp {
            return Err(Invalid::Expired { exp, now });
        }
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(NBF_LEEWAY) {
            return Err(Invalid::NotYet { nbf, now });
        }
    }
    let grants = match claims.get("ssed") {
        None => Grants::default(),
        Some(Value::Object(g)) => grants(g, "ssed.")?,
        Some(_) => return Err(malformed("the ssed claim is not an object")),
    };
    Ok(Claims {
        sub: sub(&claims)?,
        exp,
        grants,
    })
}

/// The grants an application answers for a request (`--auth-url`): the
/// token's, flat: `{"sub", "subscribe", "publish", "admin", "exp"}`, each
/// optional. `exp`, if given, ends the streams opened with the answer.
pub fn answered(answer: &Value) -> Result<Claims, Invalid> {
    let Value::Object(answer) = answer else {
        return Err(Invalid::Malformed("the answer is not a JSON object".into()));
    };
    Ok(Claims {
        sub: sub(answer)?,
        exp: time(answer, "exp")?,
        grants: grants(answer, "")?,
    })
}

/// A time claim (`exp`, `nbf`): seconds since the epoch, if there.
fn time(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, Invalid> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t >= 0.0 && t.is_finite() => Ok(Some(t.min(u64::MAX as f64) as u64)),
            _ => Err(Invalid::Malformed(format!(
                "{name} is not a time in seconds"
            ))),
        },
        Some(_) => Err(Invalid::Malformed(format!("{name} is not a number"))),
    }
}

/// `sub`, cut to 128 characters.
fn sub(claims: &Map<String, Value>) -> Result<Option<String>, Invalid> {
    match claims.get("sub") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.chars().take(128).collect())),
        Some(_) => Err(Invalid::Malformed("sub is not a string".into())),
    }
}

/// `subscribe`, `publish` and `admin` of `g`; `prefix` names where they
/// are in messages (`ssed.`).
fn grants(g: &Map<String, Value>, prefix: &str) -> Result<Grants, Invalid> {
    let patterns = |name: &str| -> Result<Vec<Pattern>, Invalid> {
        match g.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_PATTERNS => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Pattern::parse(s)
                        .map_err(|why| Invalid::Malformed(format!("{prefix}{name}: {why}"))),
                    _ => Err(Invalid::Malformed(format!(
                        "{prefix}{name} holds something other than a string"
                    ))),
                })
                .collect(),
            Some(Value::Array(_)) => Err(Invalid::Malformed(format!(
                "{prefix}{name} holds more than {MAX_PATTERNS} patterns"
            ))),
            Some(_) => Err(Invalid::Malformed(format!(
                "{prefix}{name} is not a list of patterns"
            ))),
        }
    };
    Ok(Grants {
        subscribe: patterns("subscribe")?,
        publish: patterns("publish")?,
        admin: match g.get("admin") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Invalid::Malformed(format!(
                    "{prefix}admin is not true or false"
                )))
            }
        },
    })
}

/// A token for `claims` (a JSON object), signed with `key` (`ssed token`).
pub fn sign(claims: &Value, key: &Key) -> String {
    let head = encode(json!({"alg": "HS256", "typ": "JWT"}).to_string().as_bytes());
    let body = encode(claims.to_string().as_bytes());
    let mut mac = key.mac();
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let sig = encode(&mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648, section 5).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// base64url without padding, strictly: no padding, no other characters,
/// no length that cannot be, and no stray bits in the last character (so
/// that one string of bytes has one encoding).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        // The bits past the last whole byte must be zero.
        if n & ((1 << (8 * (3 - bytes))) - 1) != 0 {
            return None;
        }
        for i in 0..bytes {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"a key of thirty-two bytes, or so").unwrap()
    }

    #[test]
    fn base64url_round_trips_and_refuses_what_is_not() {
        // RFC 4648's vectors, without padding, in the URL alphabet.
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff], "-_8"),
        ] {
            assert_eq!(encode(bytes), text);
            assert_eq!(decode(text).as_deref(), Some(bytes), "{text}");
        }
        for bad in ["Zg==", "Z", "Zh", "Zm9=", "Zm+v", "Zm/v", "Zm9v\n", "Zm 9"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_key_has_256_bits_at_least() {
        assert!(Key::new(&[7; 31]).is_err());
        assert!(Key::new(&[7; 32]).is_ok());
        assert_eq!(format!("{:?}", key()), "Key(*** 32 bytes)");
    }

    #[test]
    fn tokens_are_read_and_refused_for_one_reason_each() {
        let k = key();
        let claims = json!({
            "sub": "user 42",
            "exp": 2000,
            "nbf": 1000,
            "ssed": {"subscribe": ["users/42/*"], "publish": ["users/42/outbox"], "admin": false}
        });
        let token = sign(&claims, &k);
        let c = verify(&token, &k, 1500).unwrap();
        assert_eq!(c.sub.as_deref(), Some("user 42"));
        assert_eq!(c.exp, Some(2000));
        assert!(c.grants.may_subscribe("users/42/inbox"));
        assert!(!c.grants.may_subscribe("users/43/inbox"));
        assert!(!c.grants.may_subscribe("users/42/a/b"));
        assert!(c.grants.may_publish("users/42/outbox"));
        assert!(!c.grants.may_publish("users/42/inbox"));
        assert!(!c.grants.admin);
        // Time: exp is exact, nbf has its leeway.
        assert_eq!(
            verify(&token, &k, 2000),
            Err(Invalid::Expired {
                exp: 2000,
                now: 2000
            })
        );
        assert!(verify(&token, &k, 1000 - NBF_LEEWAY).is_ok());
        assert_eq!(
            verify(&token, &k, 1000 - NBF_LEEWAY - 1),
            Err(Invalid::NotYet {
                nbf: 1000,
                now: 1000 - NBF_LEEWAY - 1
            })
        );
        // Another key, a changed payload, a changed header.
        let other = Key::new(&[1; 32]).unwrap();
        assert_eq!(verify(&token, &other, 1500), Err(Invalid::Signature));
        let parts: Vec<&str> = token.split('.').collect();
        let admin = encode(
            json!({"sub": "user 42", "ssed": {"admin": true}})
                .to_string()
                .as_bytes(),
        );
        let forged = format!("{}.{admin}.{}", parts[0], parts[2]);
        assert_eq!(verify(&forged, &k, 1500), Err(Invalid::Signature));
        // alg none, and other algorithms, whatever the signature.
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let head = encode(json!({"alg": alg}).to_string().as_bytes());
            let t = format!("{head}.{}.{}", parts[1], parts[2]);
            assert_eq!(verify(&t, &k, 1500), Err(Invalid::Algorithm(alg.into())));
            let t = format!("{head}.{}.", parts[1]);
            assert_eq!(verify(&t, &k, 1500), Err(Invalid::Algorithm(alg.into())));
        }
        // Malformed, in every part.
        let signed = |claims: Value| sign(&claims, &k);
        for (bad, why) in [
            ("abc".to_string(), "not three parts"),
            ("a.b.c.d".to_string(), "not three parts"),
            ("!.b.c".to_string(), "header is not base64url"),
            (
                format!("{}.{}.!", parts[0], parts[1]),
                "signature is not base64url",
            ),
            (signed(json!([1, 2])), "payload is not a JSON object"),
            (signed(json!({"exp": "soon"})), "exp is not a number"),
            (signed(json!({"exp": -1})), "exp is not a time"),
            (signed(json!({"sub": 42})), "sub is not a string"),
            (
                signed(json!({"ssed": []})),
                "the ssed claim is not an object",
            ),
            (
                signed(json!({"ssed": {"subscribe": "a"}})),
                "not a list of patterns",
            ),
            (
                signed(json!({"ssed": {"subscribe": [1]}})),
                "other than a string",
            ),
            (
                signed(json!({"ssed": {"subscribe": ["a/**/b"]}})),
                "ssed.subscribe: ",
            ),
            (signed(json!({"ssed": {"admin": 1}})), "ssed.admin"),
            ("x".repeat(MAX_TOKEN + 1), "longer than"),
        ] {
            match verify(&bad, &k, 1500) {
                Err(e @ Invalid::Malformed(_)) => {
                    assert!(e.to_string().contains(why), "{e} / {why}")
                }
                other => panic!("{bad:.60}: {other:?}"),
            }
        }
        let crit = encode(
            json!({"alg": "HS256", "crit": ["x"]})
                .to_string()
                .as_bytes(),
        );
        assert!(matches!(
            verify(&format!("{crit}.{}.{}", parts[1], parts[2]), &k, 1500),
            Err(Invalid::Malformed(_))
        ));
        // No grants: valid, and allowed nothing.
        let c = verify(&signed(json!({})), &k, 1500).unwrap();
        assert_eq!(c, Claims::default());
        // Every refusal is one sentence.
        for e in [
            Invalid::Signature,
            Invalid::Algorithm("none".into()),
            Invalid::Expired { exp: 1, now: 3 },
            Invalid::NotYet { nbf: 9, now: 3 },
        ] {
            let s = e.to_string();
            assert!(!s.contains('\n') && s.starts_with("the token"), "{s}");
        }
        assert!(looks_like_jwt(&token) && !looks_like_jwt("static-token"));
    }
}
