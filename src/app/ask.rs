//! Asking the application (`--auth-url`), as nginx's `auth_request` and
//! Nchan's `nchan_authorize_request` do: a request that carries no valid
//! token is decided by the application that knows its users, by their
//! session cookie or their own bearer token.
//!
//! ssed sends `GET URL` with the request's `Cookie` (not for a publish:
//! a cookie never publishes) and `Authorization` and the original method
//! and target (`X-Forwarded-Method`, `X-Forwarded-Uri`). A `200` answer carries grants as a token does
//! (`{"sub", "subscribe", "publish", "admin", "exp"}`); `401` and `403`
//! are passed on, a redirect (to a login page) is a `401`; anything else,
//! or no answer within `--auth-timeout`, is `503`: never access.
//!
//! Answers are kept per credentials for `--auth-cache`, so that browsers
//! reconnecting together cost the application one request each, not one
//! a reconnection. The cache is keyed by a SHA-256 of the credentials (it
//! holds no cookie or token) and bounded in entries and bytes.

use super::auth::{Access, Denied, Who};
use super::routes;
use crate::client::{http, Url};
use crate::http1::{Request, Response};
use crate::jwt;
use crate::log::Throttled;
use crate::sync::lock;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest answer read from the application.
const MAX_ANSWER: u64 = 16 * 1024;

/// Answers kept at most, and their bytes together.
const MAX_CACHED: usize = 10_000;
const MAX_CACHED_BYTES: usize = 2 << 20;

/// The application, and what it answered lately.
pub struct Asker {
    url: Url,
    timeout: Duration,
    ttl: Duration,
    cache: Mutex<Cache>,
    failures: Throttled,
    pub counters: Counters,
}

/// What `/metrics` shows of the application.
#[derive(Default)]
pub struct Counters {
    /// Requests sent to the application.
    pub asked: AtomicU64,
    /// Requests answered from the cache.
    pub cached: AtomicU64,
    /// Requests the application did not answer usably (503).
    pub failed: AtomicU64,
}

/// What the application said about some credentials.
#[derive(Clone)]
enum Answer {
    Granted(jwt::Claims),
    /// Its status (401 or 403) and the reason to pass on.
    Refused(u16, String),
}

#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], (Instant, Answer, usize)>,
    /// Keys in the order they were stored, with when.
    order: VecDeque<([u8; 32], Instant)>,
    bytes: usize,
}

impl Asker {
    pub fn new(url: &str, timeout: Duration, ttl: Duration) -> Result<Asker, String> {
        Ok(Asker {
            url: Url::parse(url).map_err(|why| format!("--auth-url {url}: {why}"))?,
            timeout,
            ttl,
            cache: Mutex::new(Cache::default()),
            failures: Throttled::new("--auth-url failures"),
            counters: Counters::default(),
        })
    }

    /// What `req` may do, its tokens having said `denied`. A signed token
    /// that is not valid is refused as it is (the client must renew it);
    /// no credentials, or ones ssed does not know, are the application's
    /// to judge.
    pub fn ask(&self, req: &Request, who: Who, denied: Denied) -> Result<Access, Response> {
        if matches!(denied, Denied::Invalid(_)) {
            return routes::refuse(who, denied);
        }
        // A publish is judged by its Authorization alone, as with tokens:
        // a session cookie would let any page the browser visits publish
        // in its user's name.
        let cookie = req.header("Cookie").filter(|_| who != Who::Publishers);
        let authorization = req.header("Authorization");
        let key = digest(cookie, authorization);
        if let Some(answer) = self.cached(&key) {
            self.counters.cached.fetch_add(1, Ordering::Relaxed);
            return decided(answer);
        }
        self.counters.asked.fetch_add(1, Ordering::Relaxed);
        match self.call(req, cookie, authorization) {
            Ok((answer, size)) => {
                self.store(key, answer.clone(), size);
                decided(answer)
            }
            Err(why) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.failures.note(&why);
                Err(Response::error(503, &why).with("Retry-After", "1"))
            }
        }
    }

    /// One request to the application: its answer and its size, or why it
    /// gave none that can be used.
    fn call(
        &self,
        req: &Request,
        cookie: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<(Answer, usize), String> {
        let mut headers = vec![
            ("Accept".to_string(), "application/json".to_string()),
            ("X-Forwarded-Method".to_string(), req.method.clone()),
            ("X-Forwarded-Uri".to_string(), req.target.clone()),
            (
                "User-Agent".to_string(),
                concat!("ssed/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        for (name, value) in [("Cookie", cookie), ("Authorization", authorization)] {
            if let Some(value) = value {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        let failed = |why: String| format!("the application (--auth-url) {why}");
        let mut res = http::request(&self.url, "GET", &headers, None, Some(self.timeout))
            .map_err(|e| failed(format!("could not be asked: {e}")))?;
        let body = res
            .text(MAX_ANSWER + 1)
            .map_err(|e| failed(format!("answered {} and then failed: {e}", res.status)))?;
        if body.len() as u64 > MAX_ANSWER {
            return Err(failed(format!(
                "answered {} with more than {MAX_ANSWER} bytes",
                res.status
            )));
        }
        let reason = || {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(one_line))
        };
        let answer = match res.status {
            200 => {
                let value: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|_| failed("answered 200 without JSON grants".into()))?;
                let claims = jwt::answered(&value).map_err(|invalid| {
                    let why = match invalid {
                        jwt::Invalid::Malformed(why) => why,
                        other => other.to_string(),
                    };
                    failed(format!("answered 200 with grants ssed cannot read: {why}"))
                })?;
                Answer::Granted(claims)
            }
            401 => Answer::Refused(
                401,
                match reason() {
                    Some(why) => format!("the application refused the credentials: {why}"),
                    None => "the application does not know these credentials (401)".into(),
                },
            ),
            403 => Answer::Refused(
                403,
                match reason() {
                    Some(why) => format!("the application refused this request: {why}"),
                    None => "the application refused this request (403)".into(),
                },
            ),
            // Sent to a login page: not signed in.
            300..=399 => Answer::Refused(
                401,
                format!(
                    "not signed in: the application answered {} (a redirect, to its login page?)",
                    res.status
                ),
            ),
            status => {
                return Err(failed(format!(
                    "answered {status} {}",
                    one_line(&res.reason)
                )))
            }
        };
        Ok((answer, body.len()))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Answer> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = lock(&self.cache);
        let (at, answer, _) = cache.entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| answer.clone())
    }

    fn store(&self, key: [u8; 32], answer: Answer, size: usize) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let size = size + 128;
        let mut cache = lock(&self.cache);
        if let Some((_, _, old)) = cache.entries.remove(&key) {
            cache.bytes -= old;
        }
        // The oldest go first: expired ones, then as many as make room.
        while let Some(&(oldest, at)) = cache.order.front() {
            let room = cache.entries.len() < MAX_CACHED && cache.bytes + size <= MAX_CACHED_BYTES;
            if room && at.elapsed() < self.ttl {
                break;
            }
            cache.order.pop_front();
            // Only the entry stored then: a key stored again later stays.
            if cache
                .entries
                .get(&oldest)
                .is_some_and(|(stored, _, _)| *stored == at)
            {
                if let Some((_, _, old)) = cache.entries.remove(&oldest) {
                    cache.bytes -= old;
                }
            }
        }
        cache.entries.insert(key, (now, answer, size));
        cache.order.push_back((key, now));
        cache.bytes += size;
    }
}

fn decided(answer: Answer) -> Result<Access, Response> {
    match answer {
        Answer::Granted(claims) => Ok(Access::Granted(claims)),
        Answer::Refused(401, why) => Err(Response::error(401, &why)
            .with("WWW-Authenticate", r#"Bearer realm="ssed""#.to_string())),
        Answer::Refused(status, why) => Err(Response::error(status, &why)),
    }
}

/// The cache's key: a hash of the credentials, so that the cache holds
/// none of them.
fn digest(cookie: Option<&str>, authorization: Option<&str>) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [cookie, authorization] {
        match part {
            Some(v) => {
                h.update([1]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
            None => h.update([0]),
        }
    }
    h.finalize().into()
}

/// The application's words, as one line of at most 200 characters.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_tells_credentials_apart() {
        assert_ne!(digest(Some("a"), None), digest(None, Some("a")));
        assert_ne!(digest(Some("ab"), Some("c")), digest(Some("a"), Some("bc")));
        assert_eq!(digest(Some("x"), None), digest(Some("x"), None));
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_in_time() {
        let asker = Asker::new(
            "http://127.0.0.1:9/",
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .unwrap();
        let granted = || Answer::Granted(jwt::Claims::default());
        for i in 0..(MAX_CACHED + 10) {
            asker.store(digest(Some(&i.to_string()), None), granted(), 10);
        }
        let cache = lock(&asker.cache);
        assert_eq!(cache.entries.len(), MAX_CACHED);
        assert_eq!(cache.bytes, MAX_CACHED * 138);
        drop(cache);
        // The oldest went first.
        assert!(asker.cached(&digest(Some("0"), None)).is_none());
        assert!(asker
            .cached(&digest(Some(&(MAX_CACHED + 9).to_string()), None))
            .is_some());
        // Large answers: bounded by bytes.
        for i in 0..100 {
            asker.store(digest(Some(&format!("big{i}")), None), granted(), 16 * 1024);
        }
        assert!(lock(&asker.cache).bytes <= MAX_CACHED_BYTES);
        // Nothing kept with a ttl of 0.
        let never = Asker::new(
            "http://127.0.0.1:9/",
            Duration::from_secs(1),
            Duration::ZERO,
        )
        .unwrap();
        never.store(digest(None, None), granted(), 1);
        assert!(never.cached(&digest(None, None)).is_none());
    }
}
