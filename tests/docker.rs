//! The image and the compose file, where Docker runs: `make image`, the
//! compose file's services up (with a stand-in for `redis:7` built from
//! Debian's `redis-server` where that image cannot be pulled), a message
//! posted on one instance seen on the other's `/sse` and in the listener's
//! log, every service stopped within seconds, and everything removed.
//! Without a Docker daemon the test says so and passes, unless
//! `SSED_REQUIRE_DOCKER` is set.

mod common;

use common::{fetch, json, wait_until};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn docker_runs() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let compose = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    // And a daemon that can make a network (one without the privileges
    // for its bridge cannot run the compose file).
    let name = format!("ssedprobe{}", std::process::id());
    let network = ok
        && Command::new("docker")
            .args(["network", "create", &name])
            .output()
            .is_ok_and(|o| o.status.success());
    if network {
        let _ = Command::new("docker")
            .args(["network", "rm", &name])
            .output();
    }
    let ok = ok && network;
    if !(ok && compose) {
        assert!(
            std::env::var_os("SSED_REQUIRE_DOCKER").is_none(),
            "Docker (a running dockerd and docker-compose) is not here, and SSED_REQUIRE_DOCKER is set"
        );
        eprintln!("SKIPPED: no running Docker daemon that can make a network, or no docker-compose (apt-get install docker.io docker-compose; dockerd)");
    }
    ok && compose
}

/// `redis:7`, or, where it cannot be had, a stand-in under that tag: the
/// host's `redis-server` and `redis-cli` with the libraries they load, in
/// an image FROM scratch. Whether the stand-in was built (to remove it).
fn redis_image(dir: &Path) -> bool {
    let have = Command::new("docker")
        .args(["image", "inspect", "redis:7"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return false;
    }
    let pulled = Command::new("docker")
        .args(["pull", "--quiet", "redis:7"])
        .output()
        .is_ok_and(|o| o.status.success());
    if pulled {
        return false;
    }
    eprintln!("redis:7 cannot be pulled here: building a stand-in from this host's redis-server under that tag");
    let context = dir.join("redis");
    std::fs::create_dir_all(&context).unwrap();
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (bin, name) in [
        ("/usr/bin/redis-server", "/usr/local/bin/redis-server"),
        ("/usr/bin/redis-cli", "/usr/local/bin/redis-cli"),
    ] {
        let real = std::fs::canonicalize(bin).expect("redis-server is installed");
        files.push((real, name.to_string()));
        let ldd = run(Command::new("ldd").arg(bin));
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = line
                .split("=>")
                .last()
                .and_then(|r| r.split_whitespace().next())
                .filter(|p| p.starts_with('/'));
            if let Some(lib) = lib {
                let real = std::fs::canonicalize(lib).unwrap();
                files.push((real, lib.to_string()));
            }
        }
    }
    let mut dockerfile = String::from("FROM scratch\nENV PATH=/usr/local/bin:/usr/bin:/bin\n");
    for (i, (real, at)) in files.iter().enumerate() {
        let name = format!("f{i}");
        std::fs::copy(real, context.join(&name)).unwrap();
        dockerfile.push_str(&format!("COPY {name} {at}\n"));
    }
    dockerfile.push_str("EXPOSE 6379\nCMD [\"redis-server\"]\n");
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    run(Command::new("docker")
        .args(["build", "--quiet", "-t", "redis:7"])
        .arg(&context));
    true
}

/// The compose project, brought down and its images removed whatever
/// happens.
struct Project {
    name: String,
    env: Vec<(&'static str, String)>,
    stand_in: bool,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-p", &self.name])
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self
            .compose(&["down", "--volumes", "--timeout", "5"])
            .output();
        let _ = Command::new("docker")
            .args(["image", "rm", "ssed:latest"])
            .output();
        if self.stand_in {
            let _ = Command::new("docker")
                .args(["image", "rm", "redis:7"])
                .output();
        }
    }
}

#[test]
fn the_image_and_the_compose_file() {
    if !docker_runs() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("ssed-docker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The image, as a user builds it.
    run(Command::new("make")
        .current_dir(root)
        .args(["--no-print-directory", "image"]));
    let version = run(Command::new("docker").args(["run", "--rm", "ssed:latest", "version"]));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("ssed {}\n", env!("CARGO_PKG_VERSION"))
    );
    let user = run(Command::new("docker").args([
        "image",
        "inspect",
        "ssed:latest",
        "--format",
        "{{.Config.User}}",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "65534:65534",
        "an unprivileged user"
    );
    let stand_in = redis_image(&dir);
    let (p1, p2) = (common::free_port(), common::free_port());
    let project = Project {
        name: format!("ssedtest{}", std::process::id()),
        env: vec![
            ("SSED1_PORT", p1.to_string()),
            ("SSED2_PORT", p2.to_string()),
        ],
        stand_in,
    };
    run(&mut project.compose(&["up", "-d"]));
    let one: SocketAddr = format!("127.0.0.1:{p1}").parse().unwrap();
    let two: SocketAddr = format!("127.0.0.1:{p2}").parse().unwrap();
    for addr in [one, two] {
        wait_until(SOON, "an instance linked to Redis", || {
            std::net::TcpStream::connect(addr).is_ok()
                && fetch(addr, "GET", "/healthz", &[], b"").0.status == 200
        });
    }
    // The pages are served.
    assert_eq!(fetch(two, "GET", "/messages.html", &[], b"").0.status, 200);
    // A message posted on one instance: on the other's /sse, and in the
    // listener's log.
    let mut sse = common::Conn::open_stream(two, "/sse");
    let (head, body) = fetch(
        one,
        "POST",
        "/messages",
        &[("Content-Type", "application/json")],
        br#"{"message": "Message 1"}"#,
    );
    assert_eq!(head.status, 200, "{body}");
    assert_eq!(json(&body)["status"], "Received");
    let got = sse.events(1);
    assert_eq!(json(&got[0].data)["message"], "Message 1");
    wait_until(SOON, "the message in the listener's log", || {
        let logs = project
            .compose(&["logs", "--no-color", "listener"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&logs.stdout)
            .contains(r#"{"status": "Received", "message": "Message 1"}"#)
    });
    drop(sse);
    // Every service stops within seconds (ssed as PID 1 takes SIGTERM, the
    // listener too).
    let started = Instant::now();
    run(&mut project.compose(&["stop", "--timeout", "10"]));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "stopped in {took:?}");
    let exits = run(&mut project.compose(&["ps", "-q"]));
    for id in String::from_utf8_lossy(&exits.stdout).split_whitespace() {
        let code = run(Command::new("docker").args([
            "inspect",
            id,
            "--format",
            "{{.Name}} {{.State.ExitCode}}",
        ]));
        let text = String::from_utf8_lossy(&code.stdout).to_string();
        assert!(text.trim().ends_with(" 0"), "{text}");
    }
    drop(project);
    let _ = std::fs::remove_dir_all(&dir);
}
