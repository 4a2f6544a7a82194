//! The comparison for `make bench-compare`: the same hub route as ssed's
//! `/events/bench`, the usual async Rust way (axum on tokio, one shared epoll
//! loop, a broadcast channel). Not part of ssed; built only with the
//! `bench-compare` feature.
//!
//! GET /events/bench streams `retry: 2000` and then every published body as
//! an event; POST /events/bench publishes its body. Prints the address it
//! bound, as ssed does.

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

type Hub = broadcast::Sender<Arc<str>>;

#[tokio::main]
async fn main() {
    // A subscriber further behind than this misses events (counted lost).
    let (hub, _) = broadcast::channel::<Arc<str>>(1024);
    let app = Router::new()
        .route("/events/bench", get(subscribe).post(publish))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "axum listening on http://{}/",
        listener.local_addr().expect("address")
    );
    axum::serve(listener, app).await.expect("serve");
}

async fn subscribe(State(hub): State<Hub>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = hub.subscribe();
    let first = stream::once(async { Ok(Event::default().retry(Duration::from_millis(2000))) });
    let live = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(data) => return Some((Ok(Event::default().data(&*data)), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(first.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn publish(State(hub): State<Hub>, body: String) -> Json<serde_json::Value> {
    let subscribers = hub.send(body.into()).unwrap_or(0);
    Json(serde_json::json!({ "subscribers": subscribers }))
}
