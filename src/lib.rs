//! ssed: a Server-Sent Events daemon on std threads.
//!
//! One small binary that streams live data to browsers, curl and scripts:
//! the demos of the seed tutorials (a clock, a system monitor, a training
//! progress bar, a stock ticker, the Flask and JSON examples) and a
//! publish/subscribe channel (`POST /messages`, `GET /sse`).
//!
//! Start a server in-process (tests do this on port 0):
//!
//! ```no_run
//! let config = ssed::Config { addr: "127.0.0.1:0".into(), ..Default::default() };
//! let server = ssed::Server::start(config)?;
//! println!("listening on {}", server.addr());
//! server.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The modules, each owning one concept (see ARCHITECTURE in the README):
//! - [`sse`]: the wire format; no sockets.
//! - [`hub`]: topics, rings of events with subscribers; no HTTP.
//! - [`stream`]: stream threads, framing and the write loop.
//! - [`demos`]: the producers of the demo events.
//! - [`routes`]: (method, path) to what to do; query parsing.
//! - [`server`]: the only module that touches tiny_http.
//! - [`http`] and [`client`]: `ssed listen` and `ssed publish`.
#![deny(unsafe_code)]

pub mod auth;
pub mod client;
pub mod config;
pub mod demos;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod publish;
pub mod pyjson;
pub mod routes;
pub mod server;
pub mod sse;
pub mod stream;
pub mod sys;
pub mod www;

pub use config::Config;
pub use server::Server;
