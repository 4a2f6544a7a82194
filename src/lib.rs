//! ssed: a Server-Sent Events daemon on std threads.
//!
//! One small binary that streams live data to browsers, curl and scripts:
//! the demos of the seed tutorials (a clock, a system monitor, a training
//! progress bar, a stock ticker, the Flask and JSON examples) and a
//! publish/subscribe hub (`POST /events/{topic}`, `GET /events/{topic}`,
//! `POST /messages`, `GET /sse`).
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
//! The rooms, each owning one concept (ARCHITECTURE.md has the invariants
//! and where a change goes):
//! - wire formats, bytes only: [`sse`] (events), [`http1`] (HTTP/1.1
//!   heads, framing, chunks), [`pyjson`] (JSON as Python writes it);
//! - the hub, no HTTP: [`hub`] (topics, ids, replay), [`fanout`] (the
//!   threads that tell subscribers), [`waker`];
//! - connections, the only room that accepts sockets: [`conn`];
//! - the application, no sockets: [`routes`] (request to action),
//!   [`stream`] (a stream's write loop), [`publish`], [`auth`], [`cors`],
//!   [`www`], [`metrics`], [`demos`], and [`server`], which starts it all;
//! - the client: [`client`] (`ssed listen`, `ssed publish`, and their
//!   HTTP on [`http1`]);
//! - live logs: [`sources`] (programs and files that feed topics), on
//!   [`lines`], each program under a [`keeper`] process;
//! - the edges: [`config`] and [`args`] (the command line), [`log`],
//!   [`calendar`], [`sys`] (the only `unsafe` code).
#![deny(unsafe_code)]

pub mod args;
pub mod auth;
pub mod calendar;
pub mod client;
pub mod config;
pub mod conn;
pub mod cors;
pub mod demos;
pub mod fanout;
pub mod http1;
pub mod hub;
pub mod idempotency;
pub mod lines;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod publish;
pub mod pyjson;
pub mod redis;
pub mod routes;
pub mod server;
pub mod sources;
pub mod sse;
pub mod store;
pub mod stream;
pub mod sync;
pub mod sys;
pub mod www;

pub use config::Config;
pub use server::Server;
