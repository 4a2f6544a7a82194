//! The rooms keep to their doors, as ARCHITECTURE.md says: the direction
//! of imports between the layers (read from the code: every `crate::ROOM`
//! a file names), no circle between rooms, which rooms touch sockets, that
//! only the connection layer accepts, and that `unsafe` code lives in `sys`
//! alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `src/`, as (path from `src/`, code without
/// comments).
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
    assert!(out.len() > 60, "the sources were found");
    out
}

/// The code of a file, without its comments and without its unit tests
/// (which may use what they test from any room).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The room a file is in: its top folder, or its own name at the top.
fn room(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The rooms a file's code names: `crate::ROOM` and `crate::{ROOM, ...}`.
fn names(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// Room -> the other rooms it imports.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources() {
        let from = room(&path);
        if from == "main" || from == "lib" {
            continue;
        }
        let to = graph.entry(from.clone()).or_default();
        for name in names(&code) {
            if name != from {
                to.insert(name);
            }
        }
    }
    graph
}

/// The leaves: bytes and values, the operating system, the command line.
/// They import nothing but one another.
const LEAVES: &[&str] = &[
    "args", "calendar", "config", "http1", "jwt", "lines", "log", "memory", "names", "net",
    "pyjson", "sse", "sync", "sys",
];

/// What each room must never import (ARCHITECTURE.md, "The rooms").
const NEVER: &[(&str, &[&str])] = &[
    // The transport knows no routes, topics, events or writer.
    (
        "conn",
        &[
            "app", "hub", "store", "stream", "demos", "sources", "client",
        ],
    ),
    // The hub knows no HTTP, no sockets, no log backend, no writer.
    (
        "hub",
        &[
            "app", "conn", "http1", "store", "stream", "demos", "sources", "client",
        ],
    ),
    // A log backend knows no HTTP and no writer.
    (
        "store",
        &[
            "app", "conn", "http1", "stream", "demos", "sources", "client",
        ],
    ),
    // The writer knows no log backend and no application.
    ("stream", &["app", "store", "demos", "sources", "client"]),
    // Demos only produce events.
    (
        "demos",
        &["app", "conn", "http1", "store", "sources", "client"],
    ),
    // Sources publish through the log, as any publish.
    (
        "sources",
        &["app", "conn", "http1", "stream", "demos", "client"],
    ),
    // The client is a program of its own.
    (
        "client",
        &["app", "conn", "hub", "store", "stream", "demos", "sources"],
    ),
];

#[test]
fn every_room_is_known_and_the_leaves_import_only_leaves() {
    let graph = imports();
    let known: BTreeSet<&str> = LEAVES
        .iter()
        .copied()
        .chain([
            "app", "client", "conn", "demos", "hub", "sources", "store", "stream",
        ])
        .collect();
    for (from, to) in &graph {
        assert!(
            known.contains(from.as_str()),
            "src/{from}: a room this test does not know"
        );
        for name in to {
            assert!(
                known.contains(name.as_str()),
                "src/{from} names crate::{name}"
            );
        }
        if LEAVES.contains(&from.as_str()) {
            for name in to {
                assert!(
                    LEAVES.contains(&name.as_str()),
                    "the leaf src/{from} imports the room {name}"
                );
            }
        }
    }
}

#[test]
fn imports_run_down_the_layers() {
    let graph = imports();
    for (from, never) in NEVER {
        let to = graph.get(*from).unwrap_or_else(|| panic!("no room {from}"));
        for room in *never {
            assert!(
                !to.contains(*room),
                "src/{from} imports {room}: ARCHITECTURE.md says it never does"
            );
        }
    }
    // Only the application knows every room, and no room knows it.
    for (from, to) in &graph {
        assert!(
            !to.contains("app") || from == "app",
            "src/{from} imports app"
        );
    }
}

#[test]
fn no_circle_between_rooms() {
    let graph = imports();
    fn visit<'g>(
        room: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) {
        if done.contains(room) {
            return;
        }
        if let Some(i) = path.iter().position(|r| *r == room) {
            panic!("a circle: {} -> {room}", path[i..].join(" -> "));
        }
        path.push(room);
        for next in graph.get(room).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(room);
    }
    let mut done = BTreeSet::new();
    for room in graph.keys() {
        visit(room, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn only_the_connection_layer_the_client_and_the_redis_link_touch_sockets() {
    // The listener is bound where the application starts (app/start.rs)
    // and handed to the connection layer, which alone accepts; a mux
    // (app/mux.rs) reaches the server's own listener for its streams.
    let may = |path: &str| {
        path.starts_with("conn/")
            || path.starts_with("client/")
            || path == "app/start.rs"
            || path == "app/mux.rs"
            || matches!(
                path,
                "store/redis/mod.rs" | "store/redis/conn.rs" | "store/redis/feed.rs"
            )
    };
    for (path, text) in sources() {
        if may(&path) || path == "main.rs" || path == "lib.rs" {
            continue;
        }
        for forbidden in [
            "std::net",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "socket2",
        ] {
            assert!(
                !text.contains(forbidden),
                "src/{path} mentions {forbidden}: it must not touch sockets"
            );
        }
    }
}

#[test]
fn only_the_connection_layer_accepts() {
    for (name, text) in sources() {
        if !name.starts_with("conn/") {
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
        if !name.starts_with("sys/") {
            assert!(!text.contains("unsafe {"), "src/{name} has unsafe code");
        }
    }
}
