//! `ssed healthcheck`: asks a server's `/healthz`, for container health
//! checks in an image that has no shell or curl.

use super::http;
use super::{Outcome, Url};
use std::time::Duration;

pub const HEALTHCHECK_USAGE: &str = "\
Usage: ssed healthcheck [URL]

GETs URL (by default http://127.0.0.1:8000/healthz) and exits 0 on a 2xx
answer, 1 otherwise (printing the status and the answer on stderr): a
container's health check, where the image has no shell nor curl.
";

/// Asks `url`, within `timeout`.
pub fn healthcheck(url: &str, timeout: Duration) -> Outcome {
    let url = match Url::parse(url) {
        Ok(url) => url,
        Err(why) => return Outcome::Failed(format!("{url}: {why}")),
    };
    let mut res = match http::request(&url, "GET", &[], None, Some(timeout)) {
        Ok(res) => res,
        Err(e) => return Outcome::Failed(format!("{url}: {e}")),
    };
    let body = res.text(4096).unwrap_or_default();
    if (200..300).contains(&res.status) {
        Outcome::Done
    } else {
        Outcome::Failed(format!(
            "{url}: {} {}: {}",
            res.status,
            res.reason,
            body.trim().chars().take(200).collect::<String>()
        ))
    }
}
