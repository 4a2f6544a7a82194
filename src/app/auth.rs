//! Tokens: who may publish and who may subscribe.
//!
//! Every route says who may use it ([`Who`], from `routes::Route::who`, a
//! match without a catch-all: a new route does not compile until it says).
//! Pure functions over header and query values; the server supplies them.

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

/// The tokens in force: `--publish-token`, `--subscribe-token`.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub publish: Option<String>,
    pub subscribe: Option<String>,
}

impl Tokens {
    /// Whether `presented` lets its request do what `who` may.
    pub fn allow(&self, who: Who, presented: &Presented) -> Result<(), Denied> {
        match who {
            Who::Anyone => Ok(()),
            Who::Publishers => check(self.publish.as_deref(), presented, false),
            Who::Subscribers => check(self.subscribe.as_deref(), presented, true),
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

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Wrong,
}

/// The cookie that carries a subscribe token.
pub const COOKIE: &str = "ssed_token";

/// Checks a request against `required` (no token required: allowed).
/// `anywhere` also accepts the query and the cookie, not only the header.
pub fn check(required: Option<&str>, presented: &Presented, anywhere: bool) -> Result<(), Denied> {
    let Some(required) = required else {
        return Ok(());
    };
    let bearer = presented.authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let cookie = presented.cookie.and_then(|c| {
        c.split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.trim())
    });
    let mut offered = vec![bearer];
    if anywhere {
        offered.extend([presented.query, cookie]);
    }
    let offered: Vec<&str> = offered.into_iter().flatten().collect();
    if offered.is_empty() {
        return Err(Denied::Missing);
    }
    // Every candidate is compared, so the time taken does not depend on
    // which one (if any) matched.
    let matched = offered.iter().fold(false, |acc, t| {
        acc | constant_time_eq(t.as_bytes(), required.as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(Denied::Wrong)
    }
}

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

    #[test]
    fn tokens() {
        let t = Some("s3cret");
        let cases = [
            (None, p(None, None, None), false, Ok(())),
            (t, p(Some("Bearer s3cret"), None, None), false, Ok(())),
            (t, p(Some("bearer  s3cret "), None, None), false, Ok(())),
            (t, p(None, None, None), false, Err(Denied::Missing)),
            (
                t,
                p(Some("Bearer nope"), None, None),
                false,
                Err(Denied::Wrong),
            ),
            (
                t,
                p(Some("Basic s3cret"), None, None),
                false,
                Err(Denied::Missing),
            ),
            (
                t,
                p(None, Some("s3cret"), None),
                false,
                Err(Denied::Missing),
            ),
            (t, p(None, Some("s3cret"), None), true, Ok(())),
            (
                t,
                p(None, None, Some("a=b; ssed_token=s3cret")),
                true,
                Ok(()),
            ),
            (
                t,
                p(None, None, Some("ssed_token=x")),
                true,
                Err(Denied::Wrong),
            ),
            (
                t,
                p(Some("Bearer wrong"), Some("s3cret"), None),
                true,
                Ok(()),
            ),
        ];
        for (required, presented, anywhere, expected) in cases {
            assert_eq!(
                check(required, &presented, anywhere),
                expected,
                "{:?} {:?} {:?}",
                presented.authorization,
                presented.query,
                presented.cookie
            );
        }
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
