//! `/system-stats`: one sampler for every viewer.

use super::Producer;
use crate::pyjson::{dumps, round};
use crate::sse::Event;
use serde_json::json;
use std::time::Duration;

/// Samples CPU and memory every `every`: always when `always` (so that a
/// new viewer sees the history), else only while someone watches.
pub(super) fn sample_system(mut p: Producer, every: Duration, always: bool) {
    use sysinfo::System;
    let mut sys = match System::new() {
        Ok(sys) => sys,
        Err(e) => {
            eprintln!("ssed: /system-stats is unavailable: {e}");
            return;
        }
    };
    while always || p.await_viewers() {
        // CPU usage is the change between two readings at least
        // MINIMUM_CPU_UPDATE_INTERVAL apart: take the first one now.
        sys.refresh_cpu_usage();
        if !p.rest(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL) {
            return;
        }
        while always || p.topic.subscribers() > 0 {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            let total = sys.total_memory() as f64;
            let used = sys.used_memory() as f64;
            const MB: f64 = 1024.0 * 1024.0;
            let stats = json!({
                "cpu_percent": round(f64::from(sys.global_cpu_usage()), 1),
                "memory_percent": round(if total > 0.0 { used / total * 100.0 } else { 0.0 }, 1),
                "memory_used_mb": round(used / MB, 2),
                "memory_total_mb": round(total / MB, 2),
            });
            p.publish(Event::message(dumps(&stats)));
            if !p.rest(every.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL)) {
                return;
            }
        }
        // Nobody left: the last sample would be stale for the next viewer.
        p.topic.clear();
    }
}
