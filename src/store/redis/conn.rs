//! One connection to Redis: connected, authenticated and set up, then
//! commands and their replies, each read within its limits and within
//! `--redis-timeout`.

use super::resp::{self, Limits, Reply};
use super::scripts::LuaScript;
use super::Target;
use crate::sync::lock;
use std::io::{self, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a command got no answer.
#[derive(Debug)]
pub(super) enum LinkError {
    /// Redis could not be reached or set up (resolving, connecting,
    /// `AUTH`, `SELECT`, a server that is not Redis): a sentence that says
    /// which.
    Setup(String),
    /// The connection failed. `sent`: the command had gone out whole, and
    /// Redis may have run it; else it certainly did not.
    Io { error: io::Error, sent: bool },
    /// Redis answered something a command of ssed's never gets.
    Unexpected(String),
}

impl LinkError {
    /// Whether the command may have run (its answer was lost).
    pub(super) fn after_sending(&self) -> bool {
        matches!(self, LinkError::Io { sent: true, .. })
    }

    /// Whether no answer came within the timeout (a stalled Redis), as
    /// opposed to a connection that failed.
    pub(super) fn timed_out(&self) -> bool {
        matches!(self, LinkError::Io { error, .. }
            if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// Whether a kept connection was closed by Redis while idle.
    pub(super) fn stale(&self) -> bool {
        matches!(self, LinkError::Io { error, .. } if crate::net::stale(error))
    }

    fn before(error: io::Error) -> LinkError {
        LinkError::Io { error, sent: false }
    }

    fn after(error: io::Error) -> LinkError {
        LinkError::Io { error, sent: true }
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Setup(why) | LinkError::Unexpected(why) => f.write_str(why),
            LinkError::Io { error, .. } => error.fmt(f),
        }
    }
}

/// Limits for a reply of a few short values.
pub(super) fn small_reply() -> Limits {
    Limits {
        bulk: 1024,
        items: 8,
        depth: 2,
        total: 8192,
    }
}

/// One connection to Redis.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The Redis server (its `run_id`) this connection was found to reach,
    /// if it was asked.
    pub(super) server: Option<String>,
}

impl Conn {
    /// Connects, authenticates and selects the database; the error is one
    /// line that says what went wrong.
    pub(super) fn open(target: &Target, timeout: Duration) -> Result<Conn, LinkError> {
        Conn::set_up(target, timeout).map_err(LinkError::Setup)
    }

    fn set_up(target: &Target, timeout: Duration) -> Result<Conn, String> {
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .collect();
        let mut last = format!("{} resolves to no address", target.host);
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let stream = stream.ok_or(last)?;
        let setup = |s: &TcpStream| -> io::Result<BufReader<TcpStream>> {
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            s.set_nodelay(true)?;
            Ok(BufReader::with_capacity(16 * 1024, s.try_clone()?))
        };
        let reader = setup(&stream).map_err(|e| e.to_string())?;
        let mut conn = Conn {
            stream,
            reader,
            server: None,
        };
        let small = small_reply();
        let not_redis = |e: LinkError| match e {
            LinkError::Io { error, .. } => match error.kind() {
                io::ErrorKind::InvalidData => format!("not a Redis server: {error}"),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                    "no answer within {} ms (--redis-timeout): is it a Redis server?",
                    timeout.as_millis()
                ),
                _ => error.to_string(),
            },
            other => other.to_string(),
        };
        if let Some(password) = &target.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            match conn.call(&args, &small).map_err(not_redis)? {
                Reply::Simple(_) => {}
                Reply::Error(e) => return Err(format!("the password was refused: {e}")),
                other => return Err(format!("not a Redis server: it answered {other:?} to AUTH")),
            }
        }
        if target.db != 0 {
            let db = target.db.to_string();
            match conn
                .call(&[b"SELECT", db.as_bytes()], &small)
                .map_err(not_redis)?
            {
                Reply::Simple(_) => {}
                Reply::Error(e) if e.starts_with("NOAUTH") => {
                    return Err(format!(
                        "Redis needs a password (redis://:PASSWORD@host): {e}"
                    ))
                }
                Reply::Error(e) => return Err(format!("database {}: {e}", target.db)),
                other => {
                    return Err(format!(
                        "not a Redis server: it answered {other:?} to SELECT"
                    ))
                }
            }
        }
        match conn.call(&[b"PING"], &small).map_err(not_redis)? {
            Reply::Simple(p) if p == "PONG" => Ok(conn),
            Reply::Error(e) if e.starts_with("NOAUTH") => Err(format!(
                "Redis needs a password (redis://:PASSWORD@host): {e}"
            )),
            Reply::Error(e) => Err(format!("Redis refused PING: {e}")),
            other => Err(format!("not a Redis server: it answered {other:?} to PING")),
        }
    }

    /// Whether Redis closed this connection while it sat idle (or sent
    /// something unasked, or it cannot be told): then it is not used, and
    /// nothing is sent into it.
    pub(super) fn closed_while_idle(&self) -> bool {
        !self.reader.buffer().is_empty() || closed_while_idle(&self.stream)
    }

    /// Sends one command and reads its reply. An error after the command
    /// went out whole says so ([`LinkError::after_sending`]): Redis may
    /// have run it. (One that went out in part is not run: Redis waits for
    /// the rest, and drops it with the connection.)
    pub(super) fn call(&mut self, args: &[&[u8]], limits: &Limits) -> Result<Reply, LinkError> {
        (&self.stream)
            .write_all(&resp::command(args))
            .map_err(LinkError::before)?;
        resp::read(&mut self.reader, limits).map_err(LinkError::after)
    }

    /// Sends every command, then reads every reply (reads, safe to send
    /// again).
    pub(super) fn pipeline(
        &mut self,
        commands: &[Vec<Vec<u8>>],
        limits: &Limits,
    ) -> Result<Vec<Reply>, LinkError> {
        let mut out = Vec::new();
        for cmd in commands {
            let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            out.extend(resp::command(&args));
        }
        (&self.stream).write_all(&out).map_err(LinkError::before)?;
        commands
            .iter()
            .map(|_| resp::read(&mut self.reader, limits).map_err(LinkError::after))
            .collect()
    }

    /// Runs `script` by its SHA, loading it first when Redis does not know
    /// it (a new Redis, or one that restarted).
    pub(super) fn eval(
        &mut self,
        script: &LuaScript,
        keys: &[&[u8]],
        args: &[&[u8]],
        limits: &Limits,
    ) -> Result<Reply, LinkError> {
        for _ in 0..2 {
            let known = lock(&script.sha).clone();
            let sha = match known {
                Some(sha) => sha,
                None => {
                    let reply = self.call(
                        &[b"SCRIPT", b"LOAD", script.text.as_bytes()],
                        &small_reply(),
                    )?;
                    let Some(sha) = reply.text().map(String::from) else {
                        return Err(LinkError::Unexpected(format!(
                            "Redis would not load a script: {reply:?}"
                        )));
                    };
                    *lock(&script.sha) = Some(sha.clone());
                    sha
                }
            };
            let numkeys = keys.len().to_string();
            let mut call: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), numkeys.as_bytes()];
            call.extend_from_slice(keys);
            call.extend_from_slice(args);
            match self.call(&call, limits)? {
                Reply::Error(e) if e.starts_with("NOSCRIPT") => *lock(&script.sha) = None,
                reply => return Ok(reply),
            }
        }
        Err(LinkError::Unexpected(
            "Redis keeps forgetting ssed's scripts".into(),
        ))
    }
}

/// Whether the peer closed `stream` while it sat idle (or sent something
/// unasked, or it cannot be told): then it is not used again. Looks
/// without waiting and without taking anything.
fn closed_while_idle(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let looked = stream.peek(&mut [0u8; 1]);
    let blocking = stream.set_nonblocking(false).is_ok();
    !(blocking && matches!(looked, Err(e) if e.kind() == io::ErrorKind::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_is_seen_closed_before_it_is_used() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut peer = listener.incoming().next().unwrap().unwrap();
        assert!(!closed_while_idle(&client), "open and quiet");
        peer.write_all(b"+unasked\r\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !closed_while_idle(&client) {
            assert!(
                std::time::Instant::now() < deadline,
                "unasked bytes not seen"
            );
        }
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let peer = listener.incoming().next().unwrap().unwrap();
        drop(peer);
        while !closed_while_idle(&client) {
            assert!(std::time::Instant::now() < deadline, "the close not seen");
        }
    }
}
