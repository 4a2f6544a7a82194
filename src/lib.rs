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
//! The rooms, from the top floor down (ARCHITECTURE.md has the invariants
//! and where a change goes):
//! - [`app`]: the application, the only room that knows every other: the
//!   wiring ([`Server`]), routes and who may use them, publishes, streams
//!   opened, pages, CORS, `/metrics`;
//! - [`store`]: the log of events, the seam between one instance and
//!   several ([`store::Memory`], [`store::Redis`]); [`sources`]: programs
//!   and files that feed topics through it; [`demos`]: the tutorials'
//!   producers;
//! - [`stream`]: a stream's body, written to a [`conn::Wire`];
//! - [`conn`]: the connection layer, the only room that accepts sockets;
//!   [`hub`]: topics, ids, the fan-out, idempotency keys;
//! - leaves, bytes and values only: [`http1`], [`sse`], [`pyjson`],
//!   [`names`], [`jwt`] (signed tokens), [`lines`], [`config`] and [`args`] (the command line),
//!   [`memory`] (what the host allows), [`log`], [`calendar`], [`sync`],
//!   [`net`], and [`sys`] (the only `unsafe` code);
//! - the client: [`client`] (`ssed listen`, `ssed publish`).

#![deny(unsafe_code)]

pub mod app;
pub mod args;
pub mod calendar;
pub mod client;
pub mod config;
pub mod conn;
pub mod demos;
pub mod http1;
pub mod hub;
pub mod jwt;
pub mod lines;
pub mod log;
pub mod memory;
pub mod names;
pub mod net;
pub mod pyjson;
pub mod sources;
pub mod sse;
pub mod store;
pub mod stream;
pub mod sync;
pub mod sys;

pub use app::Server;
pub use config::Config;
