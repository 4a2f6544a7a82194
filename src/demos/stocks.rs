//! `/stream-stocks`: one market for every viewer; a new viewer first gets
//! each symbol's latest quote.

use super::Producer;
use crate::pyjson::{dumps, round};
use crate::sse::Event;
use crate::sync::lock;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The seed's start prices.
pub(super) const STOCKS: [(&str, f64); 3] =
    [("AAPL", 150.00), ("GOOGL", 2800.00), ("MSFT", 300.00)];

/// `event: AAPL` `data: {"symbol": "AAPL", "price": 150.0, "change": 0.0}`.
pub(super) fn quote(symbol: &str, price: f64, change: f64) -> Event {
    let update = json!({
        "symbol": symbol,
        "price": round(price, 2),
        "change": round(change, 2),
    });
    Event::named(symbol, dumps(&update))
}

pub(super) fn run_market(mut p: Producer, mean: Duration, latest: &Mutex<Vec<Arc<Event>>>) {
    let mut prices = STOCKS;
    while p.await_viewers() {
        let i = fastrand::usize(..STOCKS.len());
        let (symbol, price) = &mut prices[i];
        // The walk is in cents, so that the change a viewer sees is the
        // difference of the prices it sees (the seed's, in floats, was off
        // by a cent about half the time).
        let old = *price;
        let step = round(fastrand::f64() - 0.5, 2);
        *price = round((old + step).max(0.0), 2);
        let change = round(*price - old, 2);
        let event = quote(symbol, *price, change);
        // The newest quote last: a new viewer gets them in the order they
        // changed.
        {
            let mut quotes = lock(latest);
            quotes.retain(|q| q.event.as_deref() != Some(*symbol));
            quotes.push(Arc::new(event.clone()));
        }
        p.publish(event);
        if !p.rest(mean.mul_f64(0.5 + fastrand::f64())) {
            return;
        }
    }
}
