//! A publish: what its body means (the event it becomes), and the action
//! that reads it and stores it.
//!
//! `text/plain` (or any body that is not JSON) is the event's data as it is,
//! line breaks kept. A JSON object `{"data": ..., "event": "..."}` gives the
//! data (a string as it is, any other JSON value as compact JSON) and the
//! name. `?event=NAME` names the event when the body does not.

use super::routes::{Post, PublishTo, MESSAGES_TOPIC};
use super::App;
use crate::conn::Exchange;
use crate::http1::{Request, Response};
use crate::hub::idempotency;
use crate::names::check_event_name;
use crate::pyjson;
use crate::sse::Event;
use serde_json::json;
use serde_json::Value;

/// The event a body makes. `content_type` is the request's header; JSON is
/// read when it says `application/json`, or when it says nothing more
/// specific than a form (as `curl -d` does) and the body is a JSON object
/// with a `data` field.
pub fn event_from_body(
    content_type: Option<&str>,
    body: &[u8],
    query_event: Option<&str>,
) -> Result<Event, String> {
    let media = crate::http1::media_type(content_type);
    let declared_json = media == "application/json" || media.ends_with("+json");
    let maybe_json = matches!(media.as_str(), "" | "application/x-www-form-urlencoded");
    let parsed = if declared_json || maybe_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(obj)) if obj.contains_key("data") || declared_json => Some(obj),
            Ok(_) if declared_json => return Err(
                r#"a JSON body must be an object such as {"data": "hello", "event": "greeting"}"#
                    .into(),
            ),
            Err(e) if declared_json => return Err(format!("body is not valid JSON: {e}")),
            // What `curl -d '{"data": "x"'` sends: an object cut short is a
            // mistake, not text to publish without a word.
            Err(e) if body.trim_ascii_start().starts_with(b"{") => {
                return Err(format!(
                    "body looks like a JSON object but is not valid JSON ({e}); send it as text/plain to publish it as it is"
                ))
            }
            _ => None,
        }
    } else {
        None
    };
    let (data, event) = match parsed {
        Some(mut obj) => {
            if let Some(other) = obj.keys().find(|k| !matches!(k.as_str(), "data" | "event")) {
                return Err(format!(
                    "unknown field {other:?} in the JSON body; it takes \"data\" and \"event\""
                ));
            }
            let data = match obj.remove("data") {
                Some(Value::String(s)) => s,
                Some(v) => v.to_string(),
                None => return Err(r#"a JSON body needs a "data" field"#.into()),
            };
            let event = match obj.remove("event") {
                None | Some(Value::Null) => query_event.map(String::from),
                Some(Value::String(name)) => Some(name),
                Some(_) => return Err(r#""event" must be a string"#.into()),
            };
            (data, event)
        }
        None => {
            let text =
                std::str::from_utf8(body).map_err(|_| "body is not UTF-8 text".to_string())?;
            (text.to_string(), query_event.map(String::from))
        }
    };
    if let Some(name) = &event {
        check_event_name(name)?;
    }
    Ok(Event {
        event,
        data,
        ..Event::default()
    })
}

impl App {
    /// Reads the body, makes it an event, stores it (its subscribers are
    /// told by the log, here and on every instance): the answer, or the
    /// refusal.
    pub(super) fn publish(
        &self,
        ex: &mut Exchange<'_>,
        to: &PublishTo,
        query_event: Option<&str>,
    ) -> Result<Response, Response> {
        let topic = match to {
            PublishTo::Seed(_) => MESSAGES_TOPIC,
            PublishTo::Topic(topic) => topic.as_str(),
        };
        if let Some(flag) = self.sources.owner(topic) {
            return Err(Response::error(
                409,
                &format!("topic {topic} is fed by {flag}; it takes no publishes"),
            ));
        }
        // Before the body is read: near the limit it is not taken in.
        if let Some(refused) = self.memory_refusal(ex) {
            return Err(refused);
        }
        let limit = self.config.max_event_bytes;
        let body = match ex.read_body(limit) {
            Ok(body) => body,
            Err(r) if r.status == 413 => {
                self.too_large.note(&format!("{}", ex.peer()));
                return Err(Response::error(
                    413,
                    &format!("body is larger than {limit} bytes (--max-event-bytes)"),
                ));
            }
            Err(r) => return Err(r.into()),
        };
        let req = ex.request();
        let key = idempotency_key(req).map_err(|why| Response::error(400, &why))?;
        let (topic, event, answer) = match to {
            PublishTo::Seed(post) => match seed_message(*post, &body) {
                Ok((event, answer)) => (MESSAGES_TOPIC, event, Some(answer)),
                Err(why) => return Err(Response::error(400, &why)),
            },
            PublishTo::Topic(topic) => {
                match event_from_body(req.header("Content-Type"), &body, query_event) {
                    Ok(event) => (topic.as_str(), event, None),
                    Err(why) => return Err(Response::error(400, &why)),
                }
            }
        };
        let stored = self
            .store
            .publish(topic, event, key.as_deref())
            .map_err(|e| self.refused(e, ex))?;
        // The seed's endpoints answer as the tutorial does; the hub's with
        // the event's id.
        let body = match answer {
            Some(answer) => answer,
            None => json!({ "id": stored.id, "topic": topic, "subscribers": stored.subscribers }),
        };
        Ok(Response::json(200, &body))
    }
}

/// The request's `Idempotency-Key`, checked: one at most.
fn idempotency_key(req: &Request) -> Result<Option<String>, String> {
    let mut keys = req.headers_named(idempotency::HEADER).map(str::trim);
    let key = keys.next();
    if keys.next().is_some() {
        return Err(format!(
            "a publish takes one {} header, not several",
            idempotency::HEADER
        ));
    }
    if let Some(key) = key {
        idempotency::check(key)?;
    }
    Ok(key.map(String::from))
}

/// `POST /messages` and `POST /send_rest` (seed 001): the body is a JSON
/// object; its `message` is echoed at once and the same JSON is broadcast.
fn seed_message(post: Post, body: &[u8]) -> Result<(Event, Value), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(r#"body must be a JSON object, such as {"message": "hello"}"#.into());
    };
    // A mistyped field is refused, not broadcast as "No message provided"
    // (an empty object still is, as the tutorial does; other fields beside
    // "message" are let be, as its model does).
    if !fields.contains_key("message") {
        if let Some(other) = fields.keys().next() {
            return Err(format!(
                "no field \"message\" in the JSON body (it has {other:?}), such as {{\"message\": \"hello\"}}"
            ));
        }
    }
    let (status, missing) = match post {
        Post::Messages => ("Received", "No message provided"),
        Post::Rest => ("Received via REST", "No REST message provided"),
    };
    let message = fields
        .get("message")
        .cloned()
        .unwrap_or_else(|| missing.into());
    let answer = json!({ "status": status, "message": message });
    Ok((Event::message(pyjson::dumps(&answer)), answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> Result<Event, String> {
        Ok(Event {
            event: event.map(String::from),
            data: data.into(),
            ..Event::default()
        })
    }

    #[test]
    fn bodies() {
        let json = Some("application/json");
        let form = Some("application/x-www-form-urlencoded");
        let text = Some("text/plain; charset=utf-8");
        type Case<'a> = (
            Option<&'a str>,
            &'a [u8],
            Option<&'a str>,
            Result<Event, String>,
        );
        let cases: Vec<Case> = vec![
            (form, b"hello", None, ev(None, "hello")),
            (None, b"two\nlines\r\n", Some("note"), ev(Some("note"), "two\nlines\r\n")),
            (text, br#"{"data": "x"}"#, None, ev(None, r#"{"data": "x"}"#)),
            (form, br#"{"data": "x", "event": "e"}"#, None, ev(Some("e"), "x")),
            (form, br#"{"other": 1}"#, None, ev(None, r#"{"other": 1}"#)),
            (json, br#"{"data": {"b": 1, "a": [true]}}"#, Some("q"), ev(Some("q"), r#"{"b":1,"a":[true]}"#)),
            (json, br#"{"data": 5, "event": null}"#, None, ev(None, "5")),
            (json, b"[1]", None, Err(r#"a JSON body must be an object such as {"data": "hello", "event": "greeting"}"#.into())),
            (json, b"{", None, Err("body is not valid JSON: EOF while parsing an object at line 1 column 1".into())),
            (json, br#"{"event": "x"}"#, None, Err(r#"a JSON body needs a "data" field"#.into())),
            (json, br#"{"data": "x", "evnt": "y"}"#, None, Err(r#"unknown field "evnt" in the JSON body; it takes "data" and "event""#.into())),
            (json, br#"{"data": "x", "event": 3}"#, None, Err(r#""event" must be a string"#.into())),
            (text, b"\xff", None, Err("body is not UTF-8 text".into())),
            (text, b"x", Some("gap"), Err(r#"the event name "gap" is reserved for ssed's notices of lost events"#.into())),
            (text, b"x", Some(" lead"), Err(r#"event names are 1 to 128 characters without CR, LF, NUL or a leading space, not " lead""#.into())),
            (json, b"{\"data\": \"x\", \"event\": \"a\\nb\"}", None, Err(r#"event names are 1 to 128 characters without CR, LF, NUL or a leading space, not "a\nb""#.into())),
        ];
        for (ct, body, q, expected) in cases {
            assert_eq!(
                event_from_body(ct, body, q),
                expected,
                "{ct:?} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
