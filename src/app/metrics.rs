//! `/metrics`: the server's counters in Prometheus text format.

use crate::conn;
use crate::hub::{Hub, Topic};
use crate::stream::Streams;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

/// What the metrics are read from.
pub struct Sources<'a> {
    pub hub: &'a Hub,
    pub streams: &'a Streams,
    pub demo_streams: &'a Streams,
    pub conns: &'a conn::Counters,
    pub max_connections: usize,
    /// A shared log's link (`--redis`).
    pub link: Option<crate::store::Link>,
    pub guard: &'a crate::memory::Guard,
    pub buffers: &'a crate::stream::Buffers,
    /// Idempotency keys kept in memory (without Redis).
    pub keys: Option<usize>,
    /// Other instances' subscribers by topic (with a shared log).
    pub elsewhere: Option<std::collections::HashMap<String, usize>>,
    /// The application asked about requests (`--auth-url`).
    pub asker: Option<&'a super::ask::Counters>,
}

/// Renders every metric; topic names need no escaping (their characters
/// are restricted to URL-safe ones).
pub fn render(s: &Sources) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    let by = |label: &str, pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs
            .iter()
            .map(|(v, n)| (format!("{{{label}=\"{v}\"}}"), *n))
            .collect()
    };
    let c = s.conns;
    metric(
        "ssed_connections_open",
        "gauge",
        "TCP connections open now.",
        &one(c.open.load(Relaxed) as u64),
    );
    metric(
        "ssed_connections_parked",
        "gauge",
        "Of those, streams that are caught up and wait without a thread.",
        &one(c.parked.load(Relaxed) as u64),
    );
    metric(
        "ssed_connections_max",
        "gauge",
        "Connections allowed at once (--max-connections).",
        &one(s.max_connections as u64),
    );
    metric(
        "ssed_connections_accepted_total",
        "counter",
        "Connections given a thread.",
        &one(c.accepted.load(Relaxed)),
    );
    metric(
        "ssed_connections_refused_total",
        "counter",
        "Connections answered 503 by the accept thread: the cap was reached (cap), no thread or descriptor could be had (resources), or memory is near its limit (memory).",
        &by(
            "reason",
            &[
                ("cap", c.refused_cap.load(Relaxed)),
                ("resources", c.refused_resources.load(Relaxed)),
                ("memory", c.refused_memory.load(Relaxed)),
            ],
        ),
    );
    metric(
        "ssed_connections_evicted_total",
        "counter",
        "Connections waiting for a request head, closed at the cap to make room for a new one.",
        &one(c.evicted.load(Relaxed)),
    );
    metric(
        "ssed_requests_refused_total",
        "counter",
        "Requests refused: a head not complete within --header-timeout (header_timeout); malformed, over a limit, or badly framed (bad_request); a stream or publish near the memory limit (memory).",
        &by(
            "reason",
            &[
                ("header_timeout", c.header_timeouts.load(Relaxed)),
                ("bad_request", c.bad_requests.load(Relaxed)),
                ("memory", s.guard.refused_requests.load(Relaxed)),
            ],
        ),
    );
    metric(
        "ssed_memory_limit_bytes",
        "gauge",
        "The memory ssed is sized for (its cgroup's limit, the host's memory, or --memory).",
        &one(s.guard.limit().bytes),
    );
    metric(
        "ssed_memory_used_bytes",
        "gauge",
        "Memory in use, as the limit counts it; past ssed_memory_refuse_above_bytes new work is refused.",
        &one(s.guard.used()),
    );
    metric(
        "ssed_memory_refuse_above_bytes",
        "gauge",
        "The limit less the margin kept free.",
        &one(s.guard.refuse_above()),
    );
    metric(
        "ssed_stream_buffer_bytes",
        "gauge",
        "What streams' unwritten pieces take now, against their shared budget (an event written alone counts whole, though its readers share it).",
        &one(s.buffers.used() as u64),
    );
    if let Some(keys) = s.keys {
        metric(
            "ssed_idempotency_keys",
            "gauge",
            "Idempotency keys remembered in memory.",
            &one(keys as u64),
        );
    }
    if let Some(asker) = s.asker {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        metric(
            "ssed_auth_requests_total",
            "counter",
            "Requests without a valid token, by how --auth-url decided them: asked (the application was asked), cached (its earlier answer for the same credentials), failed (it could not be asked or answered unusably: 503).",
            &[
                ("{result=\"asked\"}".into(), get(&asker.asked)),
                ("{result=\"cached\"}".into(), get(&asker.cached)),
                ("{result=\"failed\"}".into(), get(&asker.failed)),
            ],
        );
    }
    let kinds = [("hub", s.streams), ("demo", s.demo_streams)];
    let per_kind = |f: &dyn Fn(&Streams) -> u64| -> Vec<(String, u64)> {
        kinds
            .iter()
            .map(|(k, st)| (format!("{{kind=\"{k}\"}}"), f(st)))
            .collect()
    };
    metric(
        "ssed_streams_open",
        "gauge",
        "Streams open now: hub topics (/events, /sse) and demos.",
        &per_kind(&|st| st.open() as u64),
    );
    metric(
        "ssed_streams_max",
        "gauge",
        "Streams allowed at once (--max-streams, --max-demo-streams).",
        &per_kind(&|st| st.max() as u64),
    );
    metric(
        "ssed_streams_refused_total",
        "counter",
        "Streams refused with 503 because their cap was reached.",
        &per_kind(&|st| st.counters.refused.load(Relaxed)),
    );
    let both = |f: &dyn Fn(&Streams) -> u64| f(s.streams) + f(s.demo_streams);
    let h = &s.hub.counters;
    metric(
        "ssed_subscribers_dropped_total",
        "counter",
        "Subscribers dropped: stopped reading (write_timeout), left (gone), took nothing while the streams' buffers were full (buffers). A slow subscriber is not dropped: it skips ahead with a gap notice (slow counts those).",
        &by(
            "reason",
            &[
                ("slow", h.lagged.load(Relaxed)),
                ("write_timeout", both(&|st| st.counters.write_timeout.load(Relaxed))),
                ("gone", both(&|st| st.counters.gone.load(Relaxed))),
                ("buffers", both(&|st| st.counters.buffers.load(Relaxed))),
            ],
        ),
    );
    let topics = s.hub.topics();
    metric(
        "ssed_topics",
        "gauge",
        "Hub topics that exist now.",
        &one(topics.len() as u64),
    );
    let per_topic = |f: &dyn Fn(&Topic) -> u64| -> Vec<(String, u64)> {
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
    if let Some(elsewhere) = &s.elsewhere {
        // Every topic with subscribers anywhere: here, or on another.
        let mut all: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for t in &topics {
            *all.entry(t.name()).or_default() += t.subscribers() as u64;
        }
        for (topic, n) in elsewhere {
            *all.entry(topic.as_str()).or_default() += *n as u64;
        }
        let samples: Vec<(String, u64)> = all
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(topic, n)| (format!("{{topic=\"{topic}\"}}"), n))
            .collect();
        metric(
            "ssed_subscribers_all",
            "gauge",
            "Subscribers by topic on every instance sharing the hub (the others' counted at most a second or so ago); ssed_subscribers counts this instance's.",
            &samples,
        );
    }
    metric(
        "ssed_history_bytes",
        "gauge",
        "What the retained events of all topics cost against --history-total.",
        &one(s.hub.retained() as u64),
    );
    metric(
        "ssed_history_trimmed_total",
        "counter",
        "Events dropped from history to keep within --history-total.",
        &one(h.trimmed.load(Relaxed)),
    );
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
    metric(
        "ssed_events_watermark",
        "gauge",
        "The number of the last event this instance's hub has taken in (with a shared log: how far it has read the log; instances that differ for long lag behind).",
        &one(s.hub.watermark()),
    );
    // A shared log's link, named by its backend (`ssed_redis_up`, ...):
    // nothing here knows which backends exist.
    if let Some(link) = &s.link {
        let (up, rtt) = (u64::from(link.up()), link.rtt);
        let b = link.backend;
        metric(
            &format!("ssed_{b}_up"),
            "gauge",
            &format!("1 while the link to the shared log ({b}) is up."),
            &one(up),
        );
        metric(
            &format!("ssed_{b}_reconnects_total"),
            "counter",
            &format!("Times the link to the shared log ({b}) came back after it was lost."),
            &one(link.reconnects),
        );
        metric(
            &format!("ssed_{b}_resets_total"),
            "counter",
            &format!("Times this instance's hub streams were ended because the shared log ({b}) lost events they were owed."),
            &one(link.resets),
        );
        let _ = writeln!(
            out,
            "# HELP ssed_{b}_rtt_seconds Round-trip time of a PING to the shared log ({b}), measured every 2 s.\n# TYPE ssed_{b}_rtt_seconds gauge\nssed_{b}_rtt_seconds {}",
            rtt.map_or(f64::NAN, |d| d.as_secs_f64())
        );
    }
    out
}
