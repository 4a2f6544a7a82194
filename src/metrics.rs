//! `/metrics`: the server's counters in Prometheus text format.

use crate::hub::Hub;
use crate::stream::Streams;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

/// Renders every metric; topic names need no escaping (their characters
/// are restricted to URL-safe ones).
pub fn render(hub: &Hub, streams: &Streams) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    let c = &streams.counters;
    metric(
        "ssed_streams_open",
        "gauge",
        "Streams open now.",
        &one(streams.open() as u64),
    );
    metric(
        "ssed_streams_max",
        "gauge",
        "Streams allowed at once (--max-streams).",
        &one(streams.max() as u64),
    );
    metric(
        "ssed_streams_refused_total",
        "counter",
        "Streams refused with 503 because --max-streams were open.",
        &one(c.refused.load(Relaxed)),
    );
    metric(
        "ssed_subscribers_dropped_total",
        "counter",
        "Subscribers dropped: stopped reading (write_timeout), left (gone). A slow subscriber is not dropped: it skips ahead with a gap notice (slow counts those).",
        &[
            ("{reason=\"slow\"}".into(), hub.counters.lagged.load(Relaxed)),
            ("{reason=\"write_timeout\"}".into(), c.write_timeout.load(Relaxed)),
            ("{reason=\"gone\"}".into(), c.gone.load(Relaxed)),
        ],
    );
    let topics = hub.topics();
    metric(
        "ssed_topics",
        "gauge",
        "Hub topics that exist now.",
        &one(topics.len() as u64),
    );
    let per_topic = |f: &dyn Fn(&crate::hub::Topic) -> u64| -> Vec<(String, u64)> {
        topics
            .iter()
            .map(|t| (format!("{{topic=\"{}\"}}", t.name()), f(t)))
            .collect()
    };
    metric(
        "ssed_events_published_total",
        "counter",
        "Events published, by topic.",
        &per_topic(&|t| t.published()),
    );
    metric(
        "ssed_subscribers",
        "gauge",
        "Subscribers now, by topic.",
        &per_topic(&|t| t.subscribers() as u64),
    );
    let h = &hub.counters;
    metric(
        "ssed_events_delivered_total",
        "counter",
        "Hub events written to subscribers.",
        &one(h.delivered.load(Relaxed)),
    );
    metric(
        "ssed_events_replayed_total",
        "counter",
        "Events replayed to clients that resumed with Last-Event-ID.",
        &one(h.replayed.load(Relaxed)),
    );
    metric(
        "ssed_gaps_total",
        "counter",
        "Gap notices sent: events a client was owed but could not get.",
        &one(h.gaps.load(Relaxed)),
    );
    out
}
