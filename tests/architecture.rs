//! The rooms keep to their doors: the wire formats, the hub and the
//! application never touch sockets (the connection layer, the client and
//! the Redis link do), and only the connection layer accepts.

use std::path::Path;

/// The code of `src/{module}.rs`, without its comments.
fn source(module: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/{module}.rs"));
    code(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn only_the_connection_layer_the_client_and_the_redis_link_touch_sockets() {
    let socketless = [
        "sse",
        "http1",
        "pyjson",
        "calendar",
        "waker",
        "hub",
        "fanout",
        "stream",
        "routes",
        "publish",
        "auth",
        "cors",
        "www",
        "metrics",
        "demos",
        "config",
        "args",
        "log",
        "sources",
        "lines",
        "redis/resp",
        "redis/target",
    ];
    for module in socketless {
        let text = source(module);
        for forbidden in ["std::net", "TcpStream", "TcpListener", "UdpSocket"] {
            assert!(
                !text.contains(forbidden),
                "src/{module}.rs mentions {forbidden}: it must not touch sockets"
            );
        }
    }
}

/// Every `.rs` file under `src/`, as (path from `src/`, code).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.push((name, code(&std::fs::read_to_string(&path).unwrap())));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    assert!(out.len() > 20, "the sources were found");
    out
}

#[test]
fn only_the_connection_layer_accepts() {
    for (name, text) in sources() {
        if name != "conn.rs" {
            assert!(
                !text.contains(".accept()"),
                "src/{name} accepts connections"
            );
        }
    }
}

#[test]
fn unsafe_code_lives_in_sys_only() {
    for (name, text) in sources() {
        if name != "sys.rs" {
            assert!(!text.contains("unsafe {"), "src/{name} has unsafe code");
        }
    }
}
