//! The rooms keep to their doors: the wire formats, the hub and the
//! application never touch sockets, and only the connection layer accepts.

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
fn only_the_connection_layer_and_the_client_touch_sockets() {
    let socketless = [
        "sse", "http1", "pyjson", "calendar", "waker", "hub", "fanout", "stream", "routes",
        "publish", "auth", "cors", "www", "metrics", "demos", "config", "args", "log",
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

#[test]
fn only_the_connection_layer_accepts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = code(&std::fs::read_to_string(&path).unwrap());
        if name != "conn" {
            assert!(
                !text.contains(".accept()"),
                "src/{name}.rs accepts connections"
            );
        }
    }
}

#[test]
fn unsafe_code_lives_in_sys_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = code(&std::fs::read_to_string(&path).unwrap());
        if name != "sys" {
            assert!(!text.contains("unsafe {"), "src/{name}.rs has unsafe code");
        }
    }
}
