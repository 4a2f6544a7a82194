//! Tokens: who may publish and who may subscribe.
//!
//! Every route says who may use it ([`Who`], from `routes::Route::who`, a
//! match without a catch-all: a new route does not compile until it says).
//! Pure functions over header and query values; the server supplies them.
//! A static token (`--publish-token`, `--subscribe-token`) allows all its
//! route does; a signed one ([`crate::jwt`]) what its grants say.

use crate::jwt::{self, Claims};
use crate::names::Pattern;

/// Who may use a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// Pages, the demos, health, preflights, refusals.
    Anyone,
    /// Publishing: the publish token, as a Bearer header.
    Publishers,
    /// Subscribing and what lists the topics: the subscribe token, as a
    /// Bearer header, `?token=` or the cookie.
    Subscribers,
}

/// The tokens in force: `--publish-token`, `--subscribe-token`, and
/// `--token-key` for signed ones.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub publish: Option<String>,
    pub subscribe: Option<String>,
    pub key: Option<jwt::Key>,
    /// `--auth-url`: an application decides what these do not allow, so
    /// nothing is open to a request without credentials.
    pub app: bool,
}

/// What a request may do, once its credential is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// All its route allows: nothing is required, or a static token.
    All,
    /// What a signed token (or the application) granted, and no more.
    Granted(Claims),
}

impl Access {
    /// Who, for the access log.
    pub fn user(&self) -> Option<&str> {
        match self {
            Access::All => None,
            Access::Granted(c) => c.sub.as_deref(),
        }
    }

    /// Whether this access may read `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        match self {
            Access::All => true,
            Access::Granted(c) => c.grants.admin || c.grants.may_subscribe(topic),
        }
    }

    /// Whether this access may read every topic `pattern` matches.
    pub fn may_subscribe_all(&self, pattern: &Pattern) -> bool {
        match self {
            Access::All => true,
            Access::Granted(c) => {
                c.grants.admin || c.grants.subscribe.iter().any(|g| pattern.within(g))
            }
        }
    }

    pub fn may_publish(&self, topic: &str) -> bool {
        match self {
            Access::All => true,
            Access::Granted(c) => c.grants.may_publish(topic),
        }
    }

    /// `/metrics`, and every topic in `/topics`.
    pub fn is_admin(&self) -> bool {
        match self {
            Access::All => true,
            Access::Granted(c) => c.grants.admin,
        }
    }

    /// When a stream opened with it must end.
    pub fn expires(&self) -> Option<u64> {
        match self {
            Access::All => None,
            Access::Granted(c) => c.exp,
        }
    }
}

impl Tokens {
    /// What `presented` lets its request do, at `now` (seconds since the
    /// epoch), where `who` may use the route. A static token that matches
    /// allows all; else, with a key, a credential shaped as a signed token
    /// is checked as one; with a key, nothing is open to anonymous
    /// publishers and subscribers.
    pub fn allow(&self, who: Who, presented: &Presented, now: u64) -> Result<Access, Denied> {
        let (required, anywhere) = match who {
            Who::Anyone => return Ok(Access::All),
            Who::Publishers => (self.publish.as_deref(), false),
            Who::Subscribers => (self.subscribe.as_deref(), true),
        };
        if required.is_none() && self.key.is_none() && !self.app {
            return Ok(Access::All);
        }
        let offered = presented.offered(anywhere);
        if let Some(required) = required {
            // Every candidate is compared, so the time taken does not
            // depend on which one (if any) matched.
            let matched = offered.iter().fold(false, |acc, t| {
                acc | constant_time_eq(t.as_bytes(), required.as_bytes())
            });
            if matched {
                return Ok(Access::All);
            }
        }
        if let Some(key) = &self.key {
            if let Some(token) = offered.iter().find(|t| jwt::looks_like_jwt(t)) {
                return jwt::verify(token, key, now)
                    .map(Access::Granted)
                    .map_err(Denied::Invalid);
            }
        }
        if offered.is_empty() {
            Err(Denied::Missing)
        } else {
            Err(Denied::Wrong)
        }
    }
}

/// Where a request may carry a token.
pub struct Presented<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// `?token=`, accepted for subscriptions (an EventSource cannot set headers).
    pub query: Option<&'a str>,
    /// The `Cookie` header, whose `ssed_token` is accepted for subscriptions.
    pub cookie: Option<&'a str>,
}

impl Presented<'_> {
    /// The credentials offered, in the order they are tried: the Bearer
    /// header, then (`anywhere`: for subscriptions) `?token=` and the
    /// cookie. A publish reads the header alone: a cookie would let any
    /// page the browser visits publish in its user's name.
    fn offered(&self, anywhere: bool) -> Vec<&str> {
        let bearer = self.authorization.and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let cookie = self.cookie.and_then(|c| {
            c.split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| *name == COOKIE)
                .map(|(_, value)| value.trim())
        });
        let mut offered = vec![bearer];
        if anywhere {
            offered.extend([self.query, cookie]);
        }
        offered.into_iter().flatten().collect()
    }
}

/// Why a request is refused (401).
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Wrong,
    /// A signed token that is not valid, and why.
    Invalid(jwt::Invalid),
}

/// The cookie that carries a subscribe token.
pub const COOKIE: &str = "ssed_token";

/// Compares without stopping at the first difference, so that the time
/// taken does not tell an attacker how much of a guess was right. (The
/// length is not secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(
        authorization: Option<&'a str>,
        query: Option<&'a str>,
        cookie: Option<&'a str>,
    ) -> Presented<'a> {
        Presented {
            authorization,
            query,
            cookie,
        }
    }

    fn statics(publish: Option<&str>, subscribe: Option<&str>) -> Tokens {
        Tokens {
            publish: publish.map(String::from),
            subscribe: subscribe.map(String::from),
            key: None,
            app: false,
        }
    }

    #[test]
    fn static_tokens() {
        let t = statics(Some("p"), Some("s3cret"));
        let s = Who::Subscribers;
        let cases = [
            (s, p(Some("Bearer s3cret"), None, None), Ok(Access::All)),
            (s, p(Some("bearer  s3cret "), None, None), Ok(Access::All)),
            (s, p(None, None, None), Err(Denied::Missing)),
            (s, p(Some("Bearer nope"), None, None), Err(Denied::Wrong)),
            (s, p(Some("Basic s3cret"), None, None), Err(Denied::Missing)),
            (s, p(None, Some("s3cret"), None), Ok(Access::All)),
            (
                s,
                p(None, None, Some("a=b; ssed_token=s3cret")),
                Ok(Access::All),
            ),
            (s, p(None, None, Some("ssed_token=x")), Err(Denied::Wrong)),
            (
                s,
                p(Some("Bearer wrong"), Some("s3cret"), None),
                Ok(Access::All),
            ),
            // A publish reads the header alone.
            (
                Who::Publishers,
                p(Some("Bearer p"), None, None),
                Ok(Access::All),
            ),
            (
                Who::Publishers,
                p(None, Some("p"), None),
                Err(Denied::Missing),
            ),
            (
                Who::Publishers,
                p(None, None, Some("ssed_token=p")),
                Err(Denied::Missing),
            ),
            (Who::Anyone, p(None, None, None), Ok(Access::All)),
        ];
        for (who, presented, expected) in cases {
            assert_eq!(
                t.allow(who, &presented, 0),
                expected,
                "{who:?} {:?} {:?} {:?}",
                presented.authorization,
                presented.query,
                presented.cookie
            );
        }
        // Nothing required: open.
        let open = statics(None, None);
        assert_eq!(
            open.allow(Who::Publishers, &p(None, None, None), 0),
            Ok(Access::All)
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn signed_tokens_beside_static_ones() {
        let key = jwt::Key::new(&[9; 32]).unwrap();
        let mut t = statics(None, Some("s3cret"));
        t.key = Some(key.clone());
        let token = jwt::sign(
            &serde_json::json!({"sub": "u1", "exp": 100, "ssed": {"subscribe": ["a/*"]}}),
            &key,
        );
        let bearer = format!("Bearer {token}");
        let cookie = format!("x=1; ssed_token={token}");
        for presented in [
            p(Some(&bearer), None, None),
            p(None, Some(&token), None),
            p(None, None, Some(&cookie)),
        ] {
            let access = t.allow(Who::Subscribers, &presented, 50).unwrap();
            assert_eq!(access.user(), Some("u1"));
            assert!(access.may_subscribe("a/b") && !access.may_subscribe("b/a"));
            assert!(!access.is_admin() && !access.may_publish("a/b"));
            assert_eq!(access.expires(), Some(100));
        }
        // The static token still opens all, beside the key.
        assert_eq!(
            t.allow(Who::Subscribers, &p(None, Some("s3cret"), None), 50),
            Ok(Access::All)
        );
        // With a key, nothing is open: publishing needs a token too.
        assert_eq!(
            t.allow(Who::Publishers, &p(None, None, None), 50),
            Err(Denied::Missing)
        );
        // A token by cookie does not publish.
        assert_eq!(
            t.allow(Who::Publishers, &p(None, None, Some(&cookie)), 50),
            Err(Denied::Missing)
        );
        assert_eq!(
            t.allow(Who::Subscribers, &p(Some(&bearer), None, None), 100),
            Err(Denied::Invalid(jwt::Invalid::Expired {
                exp: 100,
                now: 100
            }))
        );
        assert_eq!(
            t.allow(
                Who::Subscribers,
                &p(Some("Bearer not-a-jwt"), None, None),
                50
            ),
            Err(Denied::Wrong)
        );
    }
}
