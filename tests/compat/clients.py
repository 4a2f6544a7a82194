"""Third-party SSE clients see exactly the events ssed sends.

Runs a real ssed (SSED_BIN) on a free loopback port with a short keep-alive,
publishes events of every shape, and has each client read one stream: the
replayed events first (after the `retry:` line), then, once the stream has
been idle long enough for keep-alive comments, live ones. Each client must
report exactly the published events (type, data, id): no empty event for a
`retry:` line or a keep-alive comment, nothing lost.

Clients: httpx-sse and sseclient-py (pinned in requirements.txt) here, and
undici's EventSource (pinned in tests/browser/package.json) as a Node
subprocess. Chromium's EventSource is checked by the browser tests.

Run: make compat-test (SSED_BIN picks the binary).
"""

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SSED_BIN", os.path.join(ROOT, "target/debug/ssed"))
UNDICI = os.path.join(ROOT, "tests/browser/undici_client.mjs")
# How long any one wait may take before the test fails.
WAIT = 15.0
KEEPALIVE = 0.05

# (event name or None, data)
BEFORE = [(None, "hello"), (None, "two\nlines"), ("alert", "disk full")]
AFTER = [(None, '{"temp": 21.5}'), ("alert", "  spaces kept")]


def fail(why):
    print(f"FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def start_ssed():
    child = subprocess.Popen(
        [BIN, "--addr", "127.0.0.1:0", "--keepalive", str(KEEPALIVE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SSED_")},
    )
    line = child.stdout.readline()
    m = re.match(r"ssed listening on (http://[^/]+)/", line)
    if not m:
        child.kill()
        fail(f"unexpected start-up line {line!r}")
    return child, m.group(1)


def publish(base, topic, name, data):
    url = f"{base}/events/{topic}"
    if name:
        url += f"?event={name}"
    req = urllib.request.Request(
        url, data=data.encode(), headers={"Content-Type": "text/plain"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=WAIT) as res:
        return json.load(res)["id"]


def read_httpx_sse(url, n, out):
    import httpx
    from httpx_sse import connect_sse

    with httpx.Client(timeout=WAIT) as client:
        with connect_sse(client, "GET", url) as source:
            for sse in source.iter_sse():
                out.put(("httpx-sse", {"event": sse.event or "message", "data": sse.data, "id": sse.id}))
                n -= 1
                if n == 0:
                    return


def read_sseclient(url, n, out):
    import sseclient

    res = urllib.request.urlopen(
        urllib.request.Request(url, headers={"Accept": "text/event-stream"}), timeout=WAIT
    )
    for ev in sseclient.SSEClient(res).events():
        out.put(("sseclient-py", {"event": ev.event, "data": ev.data, "id": ev.id}))
        n -= 1
        if n == 0:
            return


def read_undici(url, n, out):
    proc = subprocess.Popen(
        ["node", "--no-warnings", UNDICI, url, str(n), ",".join(sorted({name for name, _ in BEFORE + AFTER if name}))],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        out.put(("undici", json.loads(line)))
    proc.wait(timeout=WAIT)


def watch_keepalives(base, topic, seen):
    """Counts the keep-alive comments on a raw stream of the topic."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    s.sendall(f"GET /events/{topic} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while True:
        data = s.recv(4096)
        if not data:
            return
        buf += data
        seen[0] = buf.count(b": keep-alive\n")


def main():
    child, base = start_ssed()
    try:
        topic = "compat"
        ids = [publish(base, topic, name, data) for name, data in BEFORE]
        url = f"{base}/events/{topic}?last={len(BEFORE)}"
        total = len(BEFORE) + len(AFTER)
        out = queue.Queue()
        readers = [read_httpx_sse, read_sseclient, read_undici]
        for read in readers:
            threading.Thread(target=read, args=(url, total, out), daemon=True).start()
        got = {}

        def take_until(count):
            deadline = time.monotonic() + WAIT
            while sum(len(v) for v in got.values()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"timed out; so far: {json.dumps(got, indent=1)}")
                try:
                    who, ev = out.get(timeout=left)
                except queue.Empty:
                    continue
                got.setdefault(who, []).append(ev)

        take_until(len(readers) * len(BEFORE))
        # Idle streams get keep-alive comments: wait until a stream opened
        # after the readers' has had several, so theirs have had some too.
        seen = [0]
        threading.Thread(target=watch_keepalives, args=(base, topic, seen), daemon=True).start()
        deadline = time.monotonic() + WAIT
        while seen[0] < 3:
            if time.monotonic() > deadline:
                fail("no keep-alive comments")
            time.sleep(0.01)
        ids += [publish(base, topic, name, data) for name, data in AFTER]
        take_until(len(readers) * total)
        want = [
            {"event": name or "message", "data": data, "id": id}
            for (name, data), id in zip(BEFORE + AFTER, ids)
        ]
        for who in sorted(got):
            if got[who] != want:
                fail(f"{who} saw {json.dumps(got[who], indent=1)}\nnot {json.dumps(want, indent=1)}")
            print(f"ok - {who}: {len(want)} events, exactly as sent")
        if len(got) != len(readers):
            fail(f"only {sorted(got)} reported")
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
