//! What ssed keeps in Redis: its keys, and the stream entries it writes
//! and reads back.

use super::resp::Reply;
use crate::sse::Event;

pub(super) const RUN: &str = "ssed:run";
pub(super) const SEQ: &str = "ssed:seq";
pub(super) const FEED: &str = "ssed:all";
pub(super) const TOPICS: &str = "ssed:topics";
pub(super) const BYTES: &str = "ssed:bytes";
pub(super) const CUT: &str = "ssed:cut";
/// The highest cut of topics whose cuts were let go (see `scripts::AGE`).
pub(super) const CUT_FLOOR: &str = "ssed:cutfloor";
pub(super) const COST: &str = "ssed:cost";
pub(super) const TOTAL: &str = "ssed:total";
/// The Redis server (its `run_id`) that last joined the log: another one
/// means a restart or a failover.
pub(super) const FENCE: &str = "ssed:fence";
/// Instances alive, by when they last counted their subscribers.
pub(super) const INSTANCES: &str = "ssed:instances";
/// Each instance's subscribers by topic: this and its id.
pub(super) const SUBS_PREFIX: &str = "ssed:subs:";
/// Each topic's stream is this and its name.
pub(super) const TOPIC_PREFIX: &str = "ssed:t:";
/// Each publish's idempotency key is this and the key: it holds the
/// number the publish was given, for `--idempotency-ttl`.
pub(super) const IDEM_PREFIX: &str = "ssed:idem:";

pub(super) fn stream_key(topic: &str) -> String {
    format!("{TOPIC_PREFIX}{topic}")
}

/// `12-0` (a stream id ssed wrote) as 12.
pub(super) fn parse_id(id: &str) -> Option<u64> {
    id.strip_suffix("-0")?.parse().ok()
}

/// A stream entry `[id, [field, value, ...]]` as ssed wrote it: its number
/// and its event; with `topic_field`, also the topic (`t`) it names.
pub(super) fn parse_entry(entry: &Reply, topic: Option<&mut String>) -> Option<(u64, Event)> {
    let [id, fields] = entry.items()? else {
        return None;
    };
    let seq = parse_id(id.text()?)?;
    let mut event = Event::default();
    let mut topic = topic;
    for pair in fields.items()?.chunks(2) {
        let [name, value] = pair else {
            return None;
        };
        let value = String::from_utf8(value.bytes()?.to_vec()).ok()?;
        match name.bytes()? {
            b"e" => event.event = (!value.is_empty()).then_some(value),
            b"d" => event.data = value,
            b"t" => {
                if let Some(t) = topic.as_deref_mut() {
                    *t = value;
                }
            }
            _ => {}
        }
    }
    Some((seq, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(items: Vec<Reply>) -> Reply {
        Reply::Array(Some(items))
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn ids_and_entries() {
        assert_eq!(parse_id("12-0"), Some(12));
        for bad in ["12-1", "12", "-0", "x-0", ""] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
        assert_eq!(stream_key("a/b"), "ssed:t:a/b");
        let entry = arr(vec![
            bulk("7-0"),
            arr(vec![
                bulk("t"),
                bulk("news"),
                bulk("e"),
                bulk(""),
                bulk("d"),
                bulk("hi"),
            ]),
        ]);
        let mut topic = String::new();
        let (seq, event) = parse_entry(&entry, Some(&mut topic)).unwrap();
        assert_eq!(
            (seq, topic.as_str(), event.event, event.data.as_str()),
            (7, "news", None, "hi")
        );
        // A name, and entries ssed did not write: refused, not guessed at.
        let named = arr(vec![
            bulk("8-0"),
            arr(vec![bulk("e"), bulk("n"), bulk("d"), bulk("x")]),
        ]);
        assert_eq!(
            parse_entry(&named, None).unwrap().1.event.as_deref(),
            Some("n")
        );
        for bad in [
            arr(vec![bulk("9-0")]),
            arr(vec![bulk("9-1"), arr(vec![])]),
            arr(vec![bulk("9-0"), arr(vec![bulk("d")])]),
            arr(vec![
                bulk("9-0"),
                arr(vec![bulk("d"), Reply::Bulk(Some(vec![0xff]))]),
            ]),
            bulk("9-0"),
        ] {
            assert!(parse_entry(&bad, None).is_none(), "{bad:?}");
        }
    }
}
