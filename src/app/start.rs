//! Start and stop: the one place where the rooms are put together. The
//! memory ssed may use sizes what costs memory; the log's backend is
//! chosen; the hub, its fan-out, the demos and the sources started; the
//! application handed to the connection layer.

use super::auth::Tokens;
use super::www::Pages;
use super::App;
use crate::config::Config;
use crate::conn::{self, Conns, Handler};
use crate::demos::Demos;
use crate::hub::{Fanouts, Hub, Retention, Sweeper};
use crate::log::Throttled;
use crate::memory;
use crate::sources::{self, Sources};
use crate::store::{redis, Memory, Redis, Store};
use crate::stream::{Buffers, Streams};
use crate::sys;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Pending connections the kernel queues for us. A burst of connects larger
/// than the backlog loses SYNs, and those clients retry only after 1 to 31 s.
/// (Linux cuts it to `net.core.somaxconn`, 4096 by default.)
const BACKLOG: i32 = 4096;

/// The one place the log's backend is chosen: the hub alone, or a shared
/// log that the hub mirrors.
fn open_store(
    config: &Config,
    hub: Arc<Hub>,
    history_total: usize,
    max_keys: usize,
) -> io::Result<Arc<dyn Store>> {
    Ok(match &config.redis {
        Some(target) => Arc::new(Redis::start(
            target.clone(),
            redis::Settings {
                history: config.history,
                history_bytes: config.history_bytes,
                history_total,
                max_topics: config.max_topics,
                max_event_bytes: config.max_event_bytes,
                timeout: config.redis_timeout,
                idempotency_ttl: config.idempotency_ttl,
                history_ttl: config.history_ttl,
            },
            hub,
        )?),
        None => Arc::new(Memory::new(hub, config.idempotency_ttl, max_keys)),
    })
}

/// A running server. Dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    conns: Conns,
    demos: Demos,
    fanouts: Arc<Fanouts>,
    limits: Limits,
    /// `--history-ttl`'s sweep, if there is one.
    sweeper: Option<Sweeper>,
}

/// The caps in force, what they were sized for, and where the connection
/// cap came from.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// `--max-connections`, or the limit that set the default (memory,
    /// the open-files limit).
    pub set_by: &'static str,
    /// Flags that ask for more than the system holds, each in a sentence.
    pub notes: Vec<String>,
    pub max_streams: usize,
    pub max_demo_streams: usize,
    /// The memory sized for: `12 MiB`.
    pub memory: String,
    /// `--history-total` in force.
    pub history_total: usize,
}

impl Limits {
    /// The caps: a flag given wins, else what `sizing` allows or, if
    /// fewer, the open-files limit (`by_files`: the cap and its reason).
    /// A flag that asks for more than the system holds is noted.
    fn decide(
        config: &Config,
        sizing: &memory::Sizing,
        memory: &str,
        by_files: (usize, &'static str),
    ) -> Limits {
        let (system, why) = if sizing.max_connections < by_files.0 {
            (sizing.max_connections, "memory")
        } else {
            by_files
        };
        let mut notes = Vec::new();
        let max_connections = match config.max_connections {
            Some(n) => {
                if n > system {
                    notes.push(format!(
                        "--max-connections {n} is more than this system can hold ({system}, set by {why}); past that, connections are refused with 503"
                    ));
                }
                n
            }
            None => system,
        };
        let set_by = if config.max_connections.is_some() {
            "--max-connections"
        } else {
            why
        };
        let history_total = match config.history_total {
            Some(total) => {
                if total > sizing.history_total {
                    notes.push(format!(
                        "--history-total {} is more than {memory} holds ({}); past the memory, connections and publishes are refused with 503",
                        memory::size(total as u64),
                        memory::size(sizing.history_total as u64)
                    ));
                }
                total
            }
            None => sizing.history_total.max(config.max_event_bytes),
        };
        // Keep places for pages and publishes when streams fill the rest.
        let reserve = (max_connections / 16).clamp(1, 1024);
        let max_streams = config
            .max_streams
            .unwrap_or_else(|| max_connections.saturating_sub(reserve).max(1));
        Limits {
            max_connections,
            set_by,
            notes,
            max_streams,
            max_demo_streams: config.max_demo_streams,
            memory: memory.to_string(),
            history_total,
        }
    }
}

impl Server {
    /// Binds `config.addr` and starts serving. Errors name the address or
    /// the directory they are about.
    pub fn start(config: Config) -> io::Result<Server> {
        let pages = match &config.www {
            Some(dir) => {
                Pages::dir(dir).map_err(|e| io::Error::new(e.kind(), format!("--www {e}")))?
            }
            None => Pages::Embedded,
        };
        let asker = match &config.auth_url {
            Some(url) => Some(
                super::ask::Asker::new(url, config.auth_timeout, config.auth_cache)
                    .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?,
            ),
            None => None,
        };
        // What the memory allows sizes everything that costs memory; a
        // flag given says otherwise, and a flag that asks for more than
        // the memory holds is noted at start.
        let limit = match config.memory {
            Some(bytes) => memory::Limit::planned(bytes),
            None => memory::Limit::detect(),
        };
        let sizing = memory::Sizing::for_limit(limit.bytes);
        let listener = listen(&config, sizing.send_buffer)?;
        let addr = listener.local_addr()?;
        // Every connection needs a descriptor, and the soft limit is often 1024.
        let open_files = sys::limits::raise_open_files_limit().unwrap_or(1024);
        let limits = Limits::decide(
            &config,
            &sizing,
            &limit.describe(),
            sys::limits::default_max_connections(open_files),
        );
        let (max_connections, history_total) = (limits.max_connections, limits.history_total);
        let guard = Arc::new(memory::Guard::new(limit, sizing.refuse_above));
        let buffers = Buffers::new(sizing.stream_buffers, sizing.frame_bytes);
        let fanouts = Arc::new(Fanouts::start(workers())?);
        let demos = Demos::start(&config.pace, Arc::clone(&fanouts))?;
        let conn_counters = Arc::new(conn::Counters::default());
        let pressure: Arc<dyn conn::Pressure> = Arc::clone(&buffers) as Arc<dyn conn::Pressure>;
        let hub = Arc::new(
            Hub::new(
                Retention {
                    history: config.history,
                    bytes: config.history_bytes,
                },
                config.max_topics,
                history_total,
                Arc::clone(&fanouts),
            )
            .with_ttl(config.history_ttl),
        );
        let sweeper = Sweeper::start(&hub)?;
        let store = open_store(&config, Arc::clone(&hub), history_total, sizing.max_keys)?;
        let sources = Sources::start(
            &config.sources,
            Arc::clone(&store),
            Arc::clone(&hub),
            sources::Settings {
                restart: config.source_restart,
                restart_delay: config.source_restart_delay,
                tail_poll: config.tail_poll,
                max_line: config.max_event_bytes,
                keeper: config.source_keeper.clone(),
                tail_symlinks: config.tail_symlinks,
            },
        )?;
        let muxes = Arc::new(super::mux::Muxes::new(addr, max_connections)?);
        let app = Arc::new(App {
            pages,
            muxes,
            draining: AtomicBool::new(false),
            tokens: Tokens {
                publish: config.publish_token.clone(),
                subscribe: config.subscribe_token.clone(),
                key: config.token_key.clone(),
                app: config.auth_url.is_some(),
            },
            asker,
            hub,
            demos: demos.topics.clone(),
            guard: Arc::clone(&guard),
            buffers,
            streams: Streams::new(limits.max_streams),
            demo_streams: Streams::new(config.max_demo_streams),
            conn_counters: Arc::clone(&conn_counters),
            max_connections,
            sources,
            store,
            refused_streams: Throttled::new("streams refused: the stream cap was reached"),
            refused_topics: Throttled::new(
                "publishes or subscriptions refused: --max-topics reached",
            ),
            refused_memory: Throttled::new(
                "streams or publishes refused: memory is near its limit",
            ),
            too_large: Throttled::new("publishes refused: larger than --max-event-bytes"),
            config,
        });
        let settings = conn::Settings {
            max_connections,
            max_threads: sys::limits::max_threads()
                .min(sizing.max_threads)
                .min(max_connections),
            guard,
            pressure,
            header_timeout: app.config.header_timeout,
            idle_timeout: app.config.idle_timeout,
            heartbeat: app.config.heartbeat,
            write_timeout: app.config.write_timeout,
            access_log: app.config.access_log,
            trusted_proxies: app.config.trusted_proxies.clone(),
            mux_secret: app.muxes.secret().to_string(),
        };
        let handler: Arc<dyn Handler> = Arc::clone(&app) as Arc<dyn Handler>;
        let conns = Conns::start(listener, settings, handler, conn_counters)?;
        Ok(Server {
            addr,
            app,
            conns,
            demos,
            fanouts,
            limits,
            sweeper,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The caps in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `--drain`: from now on new streams are refused and `/healthz` is
    /// 503; open streams go on.
    pub fn drain(&self) {
        self.app.draining.store(true, Ordering::Release);
    }

    /// Streams open now, hub and demo.
    pub fn open_streams(&self) -> usize {
        self.app.streams.open() + self.app.demo_streams.open()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.conns.open()
    }

    /// Stops accepting, ends every stream with its last chunk, and joins
    /// every thread ssed started.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Programs get their SIGTERM first: their grace runs while the
        // connections end.
        self.app.sources.begin_stop();
        self.conns.stop();
        self.app.sources.stop();
        self.app.store.stop();
        self.fanouts.stop();
        self.demos.stop();
        if let Some(sweeper) = &self.sweeper {
            sweeper.stop();
        }
        for t in [
            &self.app.refused_streams,
            &self.app.refused_topics,
            &self.app.refused_memory,
            &self.app.too_large,
        ] {
            t.flush();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fan-out workers: one a core this process may use, by its affinity and
/// by its cgroup's CPU quota (half a core is one worker, 1.5 are two).
fn workers() -> usize {
    let cores = sys::limits::cpus();
    match crate::sys::cgroup::cpu_quota() {
        Some(quota) => cores.min(quota.ceil().max(1.0) as usize),
        None => cores,
    }
}

/// The listener; `send_buffer` caps each connection's send buffer in the
/// kernel (accepted sockets inherit it).
fn listen(config: &Config, send_buffer: Option<usize>) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = config
        .addr
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {}: {e}", config.addr)))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", config.addr),
            )
        })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit these on Linux: a write to a client that
    // stopped reading fails after the timeout instead of blocking forever,
    // events go out without Nagle's delay, and dead peers are found.
    socket.set_write_timeout(Some(config.write_timeout))?;
    socket.set_tcp_nodelay(true)?;
    socket.set_keepalive(true)?;
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(&addr.into()).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => io::Error::new(
            e.kind(),
            format!(
                "address {addr} is already in use; choose another with --addr HOST:PORT (port 0 picks a free one)"
            ),
        ),
        _ => io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")),
    })?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_come_from_flags_else_from_the_smaller_of_memory_and_files() {
        let small = memory::Sizing::for_limit(12 << 20);
        let large = memory::Sizing::for_limit(24 << 30);
        let config = Config::default();
        // A small host: memory sets the cap.
        let l = Limits::decide(&config, &small, "12 MiB", (19_000, "the open-files limit"));
        assert_eq!(
            (l.max_connections, l.set_by),
            (small.max_connections, "memory")
        );
        assert!(l.notes.is_empty());
        assert_eq!(
            l.history_total,
            small.history_total.max(config.max_event_bytes)
        );
        // A large host: the open-files limit does.
        let l = Limits::decide(&config, &large, "24 GiB", (19_000, "the open-files limit"));
        assert_eq!(
            (l.max_connections, l.set_by),
            (19_000, "the open-files limit")
        );
        // Streams leave a sixteenth (at least one, at most 1,024) for
        // pages and publishes.
        assert_eq!(l.max_streams, 19_000 - 1_024);
        let mut few = config.clone();
        few.max_connections = Some(1);
        let l = Limits::decide(&few, &large, "24 GiB", (19_000, "the open-files limit"));
        assert_eq!(
            (l.max_connections, l.max_streams, l.set_by),
            (1, 1, "--max-connections")
        );
        // Flags that ask for more than the system holds are taken, and noted.
        let mut greedy = config.clone();
        greedy.max_connections = Some(50_000);
        greedy.history_total = Some(1 << 30);
        greedy.max_streams = Some(7);
        let l = Limits::decide(&greedy, &small, "12 MiB", (19_000, "the open-files limit"));
        assert_eq!(
            (l.max_connections, l.max_streams, l.history_total),
            (50_000, 7, 1 << 30)
        );
        assert_eq!(l.notes.len(), 2, "{:?}", l.notes);
        assert!(
            l.notes[0].starts_with("--max-connections 50000 is more than this system can hold (")
        );
        assert!(l.notes[0].contains("set by memory"));
        assert!(l.notes[1].starts_with("--history-total 1 GiB is more than 12 MiB holds ("));
    }
}
