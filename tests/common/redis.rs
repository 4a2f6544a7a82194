//! A `redis-server` of a test's own, on a free loopback port with a
//! temporary directory.

use super::wait_until;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(15);

/// A `redis-server` of our own.
pub struct Redis {
    pub child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    persist: bool,
}

impl Redis {
    /// Starts one, or says why not: `None` means skip the test.
    pub fn start(persist: bool) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("SSED_REQUIRE_REDIS").is_none(),
                "redis-server is not installed, and SSED_REQUIRE_REDIS is set"
            );
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "ssed-redis-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = super::free_port();
        let mut redis = Redis {
            child: None,
            port,
            dir,
            persist,
        };
        redis.run();
        Some(redis)
    }

    /// (Re)starts the server on the same port and directory.
    pub fn run(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", ""]);
        if self.persist {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        wait_until(SOON, "redis-server to answer PING", || ping(port));
    }

    /// Stops it at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its directory (`dump.rdb` is there after `SAVE`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Restarts with what `other` holds now (its snapshot), as a replica
    /// that lags has: nothing `other` takes afterwards.
    pub fn take_snapshot_of(&mut self, other: &Redis) {
        assert!(other.cmd(&["SAVE"]).contains("OK"));
        self.kill();
        std::fs::copy(other.dir.join("dump.rdb"), self.dir.join("dump.rdb")).unwrap();
        self.run();
    }

    /// SIGSTOP (`true`) or SIGCONT: a Redis that stalls, then goes on.
    pub fn pause(&self, stop: bool) {
        let pid = self.child.as_ref().expect("running").id();
        let signal = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }

    /// Runs one command and returns the raw reply.
    pub fn cmd(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(out.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && s.read(&mut buf).is_ok_and(|n| &buf[..n] == b"+PONG\r\n")
}

/// A TCP forwarder to a Redis that can be switched to another (a failover:
/// the address stays, the server behind it changes); switching cuts every
/// connection, as a failover does.
pub struct Switch {
    pub port: u16,
    to: std::sync::Arc<std::sync::atomic::AtomicU16>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Connections closed so far (either side).
    closed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Switch {
    pub fn start(to: u16) -> Switch {
        use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(to));
        let generation = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicU64::new(0));
        let (t, g, h, c) = (
            Arc::clone(&target),
            Arc::clone(&generation),
            Arc::clone(&held),
            Arc::clone(&closed),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", t.load(Ordering::SeqCst))) else {
                    continue;
                };
                let born = g.load(Ordering::SeqCst);
                // A connection that sent XREAD: an instance's feed.
                let feed = Arc::new(AtomicBool::new(false));
                let ended = Arc::new(AtomicBool::new(false));
                for (mut from, mut to, up) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let (g, h, feed) = (Arc::clone(&g), Arc::clone(&h), Arc::clone(&feed));
                    let (c, ended) = (Arc::clone(&c), Arc::clone(&ended));
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
                        let mut buf = [0u8; 65536];
                        loop {
                            if g.load(Ordering::SeqCst) != born {
                                break;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if up && buf[..n].windows(5).any(|w| w == b"XREAD") {
                                        feed.store(true, Ordering::SeqCst);
                                    }
                                    while !up
                                        && feed.load(Ordering::SeqCst)
                                        && h.load(Ordering::SeqCst)
                                        && g.load(Ordering::SeqCst) == born
                                    {
                                        std::thread::sleep(Duration::from_millis(5));
                                    }
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        if !ended.swap(true, Ordering::SeqCst) {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
            }
        });
        Switch {
            port,
            to: target,
            generation,
            held,
            closed,
        }
    }

    /// How many connections it has closed (on both sides) so far.
    pub fn closed(&self) -> u64 {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Holds (`true`) or lets go what Redis sends to the instances' feeds
    /// (the connections that sent `XREAD`): their mirrors fall behind the
    /// log while every other connection goes on.
    pub fn hold_feeds(&self, hold: bool) {
        self.held.store(hold, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on to the Redis on `port`; open connections are cut.
    pub fn switch_to(&self, port: u16) {
        use std::sync::atomic::Ordering;
        self.send_new_to(port);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// New connections to the Redis on `port`; open ones stay where they
    /// are (a balancer that moves only new connections).
    pub fn send_new_to(&self, port: u16) {
        self.to.store(port, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A number of an `INFO` reply (`name:value` lines), 0 if absent.
pub fn info_number(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// An ssed instance on the Redis at `url` (perhaps through a proxy), its
/// link up, with short timeouts for tests.
pub fn instance_at(url: &str, tweak: impl FnOnce(&mut ssed::Config)) -> ssed::Server {
    let server = super::start(|c| {
        c.redis = Some(ssed::config::RedisTarget::parse(url).unwrap());
        c.redis_timeout = Duration::from_millis(500);
        c.heartbeat = Duration::from_millis(200);
        tweak(c);
    });
    linked(server.addr());
    server
}

/// Waits for `/healthz` to say ok.
pub fn linked(addr: std::net::SocketAddr) {
    wait_until(SOON, "the Redis link", || {
        super::fetch(addr, "GET", "/healthz", &[], b"").0.status == 200
    });
}
