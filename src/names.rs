//! The names clients give: topics, event names and idempotency keys, and
//! the rules they keep. Checked once, wherever a name comes in (a URL, a body, a flag),
//! with a sentence that quotes the rule.

use crate::sse::{DELETED_EVENT, EXPIRED_EVENT, GAP_EVENT};

/// Longest topic name.
pub const MAX_TOPIC_LEN: usize = 128;

/// Topic names: 1 to 128 characters of `A-Z a-z 0-9 . _ ~ -` and `/`
/// (URL-safe, so a topic is its own path).
pub fn check_topic(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-/".contains(&b));
    if !ok {
        return Err(format!(
            "topic names are 1 to {MAX_TOPIC_LEN} characters of A-Z a-z 0-9 . _ ~ - and /, not {name:?}"
        ));
    }
    // `news/`, `/news` and `a//b` would be topics of their own, apart from
    // `news` and `a/b`: a stray slash is refused, not a new topic.
    if name.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err(format!(
            "a topic name's / separates non-empty parts other than . and .. (no leading, trailing or double /), not {name:?}"
        ));
    }
    Ok(())
}

/// A topic pattern, in grants and (later) subscriptions: segments
/// separated by `/`, each a name that matches itself, `*` that matches
/// exactly one segment, or, as the last segment only, `**` that matches one
/// or more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// A pattern as written: a topic name whose segments may be `*`, and
    /// whose last may be `**`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let bad = |why: &str| {
            Err(format!(
                "{why}, not {:?}",
                text.chars().take(140).collect::<String>()
            ))
        };
        if text.is_empty() || text.len() > MAX_TOPIC_LEN {
            return bad(&format!("a pattern is 1 to {MAX_TOPIC_LEN} characters"));
        }
        let segments: Vec<&str> = text.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            match *seg {
                "*" => {}
                "**" if i + 1 == segments.len() => {}
                "**" => return bad("** is only the last segment of a pattern"),
                s if s.contains('*') => {
                    return bad("* stands for a whole segment (a/*/c), not part of one")
                }
                _ => {}
            }
        }
        // Every literal segment follows the rules of topic names: check the
        // pattern with its wildcards as a plain letter.
        let literal: String = text.replace('*', "x");
        check_topic(&literal).map_err(|_| {
            format!(
                "a pattern is a topic name whose segments may be * (and the last **), not {:?}",
                text.chars().take(140).collect::<String>()
            )
        })?;
        Ok(Pattern {
            text: text.to_string(),
        })
    }

    /// Whether the pattern has a wildcard (else it names one topic).
    pub fn is_wild(&self) -> bool {
        self.text.contains('*')
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` is one of the topics this pattern stands for.
    pub fn matches(&self, topic: &str) -> bool {
        if !self.is_wild() {
            return self.text == topic;
        }
        let mut want = self.text.split('/');
        let mut have = topic.split('/');
        loop {
            match (want.next(), have.next()) {
                (Some("**"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(w), Some(h)) if w == h => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl Pattern {
    /// Whether every topic this pattern matches is matched by `outer` too
    /// (a subscription by pattern needs a grant that covers all of it).
    pub fn within(&self, outer: &Pattern) -> bool {
        let mine: Vec<&str> = self.text.split('/').collect();
        let theirs: Vec<&str> = outer.text.split('/').collect();
        for (i, want) in theirs.iter().enumerate() {
            let Some(have) = mine.get(i) else {
                return false;
            };
            match (*want, *have) {
                // One or more segments: anything from here on.
                ("**", _) => return true,
                (_, "**") => return false,
                ("*", _) => {}
                (w, h) if w == h => {}
                _ => return false,
            }
        }
        mine.len() == theirs.len()
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Longest event name.
pub const MAX_EVENT_NAME: usize = 128;

/// Event names: 1 to 128 characters (not bytes: `é` is one), no CR, LF or
/// NUL (they would end the
/// `event:` line), no leading space (the reader would strip it), and not
/// `gap`, which ssed sends itself.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.chars().count() > MAX_EVENT_NAME
        || name.contains(['\r', '\n', '\0'])
        || name.starts_with(' ')
    {
        return Err(format!(
            "event names are 1 to {MAX_EVENT_NAME} characters without CR, LF, NUL or a leading space, not {name:?}"
        ));
    }
    if name == GAP_EVENT {
        return Err(format!(
            "the event name {GAP_EVENT:?} is reserved for ssed's notices of lost events"
        ));
    }
    if name == DELETED_EVENT {
        return Err(format!(
            "the event name {DELETED_EVENT:?} is reserved for ssed's notice that a topic was deleted"
        ));
    }
    if name == EXPIRED_EVENT {
        return Err(format!(
            "the event name {EXPIRED_EVENT:?} is reserved for ssed's notice that a token expired"
        ));
    }
    Ok(())
}

/// The request header.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Longest idempotency key: printable ASCII, at most this many bytes.
pub const MAX_KEY_LEN: usize = 128;

/// A key as a client may send it: 1 to 128 printable ASCII characters
/// without spaces (it becomes part of a Redis key and of a header).
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{IDEMPOTENCY_HEADER} is 1 to {MAX_KEY_LEN} printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// A key drawn for a publish that came without one (so that ssed's own
/// retries against Redis store it once).
pub fn draw_idempotency_key() -> String {
    format!("ssed-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let long = "x".repeat(129);
        for bad in [
            "", "a b", "a?b", "é", &long, "news/", "/news", "a//b", "a/./b", "..", "a/..",
        ] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
        for good in ["news", "news/sport-1.x_~", "a/b/c", &"x".repeat(128)] {
            assert!(check_topic(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn patterns() {
        let p = |t: &str| Pattern::parse(t).unwrap();
        let cases = [
            ("users/42/*", "users/42/inbox", true),
            ("users/42/*", "users/42/a/b", false),
            ("users/42/*", "users/42", false),
            ("users/42/*", "users/43/inbox", false),
            ("sensors/**", "sensors/a", true),
            ("sensors/**", "sensors/a/b/c", true),
            ("sensors/**", "sensors", false),
            ("sensors/**", "sensorsx/a", false),
            ("*/inbox", "u1/inbox", true),
            ("*/inbox", "u1/outbox", false),
            ("news", "news", true),
            ("news", "news/a", false),
            ("**", "anything/at/all", true),
            ("*", "one", true),
            ("*", "one/two", false),
        ];
        for (pattern, topic, expected) in cases {
            assert_eq!(p(pattern).matches(topic), expected, "{pattern} {topic}");
        }
        for bad in [
            "",
            "a/**/b",
            "a*",
            "a/b*/c",
            "a//*",
            "/*",
            "a b/*",
            "***",
            &"x".repeat(129),
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!p("news").is_wild() && p("a/*").is_wild());
        // Within: every topic of the first is one of the second's.
        let within = [
            ("users/42/*", "users/42/*", true),
            ("users/42/inbox", "users/42/*", true),
            ("users/*/inbox", "users/42/*", false),
            ("users/42/**", "users/42/*", false),
            ("users/42/*", "users/42/**", true),
            ("users/42/*/x", "users/42/**", true),
            ("users/42/**", "users/42/**", true),
            ("users/42", "users/42/**", false),
            ("users/**", "users/42/**", false),
            ("a/*", "*/*", true),
            ("*/*", "a/*", false),
            ("anything/at/all", "**", true),
            ("**", "**", true),
            ("a/b", "a", false),
            ("a", "a/b", false),
        ];
        for (inner, outer, expected) in within {
            assert_eq!(
                p(inner).within(&p(outer)),
                expected,
                "{inner} within {outer}"
            );
        }
    }

    #[test]
    fn event_names() {
        let long = "é".repeat(129);
        for bad in [
            "", "a\nb", "a\rb", "a\0b", " a", "gap", "expired", "deleted", &long,
        ] {
            assert!(check_event_name(bad).is_err(), "{bad:?}");
        }
        for good in ["reading", "a b", &"é".repeat(128)] {
            assert!(check_event_name(good).is_ok(), "{good:?}");
        }
    }
}
