#!/usr/bin/env python3
"""Soak: ssed under a steady churn for a while, its RSS sampled.

Publishers send events of varying sizes (100 bytes to 20 KB) to 50 topics;
about 500 subscribers come and go, each for 1 to 10 s, on 1 to 3 topics,
some resuming with Last-Event-ID or ?last=N; a tenth read slowly, one in
twenty never reads (and is dropped by --write-timeout). RSS is printed
every SAMPLE seconds; at the end, once the history has filled (after the
first fifth of the run), the lowest and highest RSS and the drift per
minute of a least-squares line through the samples.

    python3 tests/bench/soak.py --bin target/release/ssed --minutes 30
"""

import argparse
import random
import selectors
import socket
import subprocess
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/ssed")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--sample", type=float, default=15)
    ap.add_argument("--subscribers", type=int, default=500)
    args = ap.parse_args()

    proc = subprocess.Popen(
        [args.bin, "--addr", "127.0.0.1:0", "--write-timeout", "5", "--keepalive", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    addr = line.split("http://")[1].split("/")[0]
    host, port = addr.rsplit(":", 1)
    port = int(port)
    print(line.strip(), flush=True)
    stop = time.time() + args.minutes * 60
    topics = [f"soak/t{i}" for i in range(50)]
    last_ids = {}

    def rss_kb():
        with open(f"/proc/{proc.pid}/status") as f:
            for l in f:
                if l.startswith("VmRSS:"):
                    return int(l.split()[1])
        return 0

    def publisher(seed):
        rnd = random.Random(seed)
        conn = None
        while time.time() < stop:
            topic = rnd.choice(topics)
            body = b"d" * rnd.choice([100, 500, 2000, 8000, 20000])
            req = (
                f"POST /events/{topic} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            try:
                if conn is None:
                    conn = socket.create_connection((host, port), timeout=10)
                conn.sendall(req)
                reply = conn.recv(4096)
                if b'"id":"' in reply:
                    last_ids[topic] = reply.split(b'"id":"')[1].split(b'"')[0].decode()
            except OSError:
                conn = None
            time.sleep(rnd.uniform(0, 0.02))

    def churn(seed):
        rnd = random.Random(seed)
        sel = selectors.DefaultSelector()
        live = {}
        while time.time() < stop:
            now = time.time()
            while len(live) < args.subscribers:
                names = rnd.sample(topics, rnd.randint(1, 3))
                query = "&".join(f"topic={t}" for t in names)
                headers = ""
                kind = rnd.random()
                if kind < 0.2:
                    query += f"&last={rnd.randint(1, 1000)}"
                elif kind < 0.4 and names[0] in last_ids:
                    headers = f"Last-Event-ID: {last_ids[names[0]]}\r\n"
                mode = "fast"
                r = rnd.random()
                if r < 0.05:
                    mode = "never"
                elif r < 0.15:
                    mode = "slow"
                try:
                    s = socket.socket()
                    if mode != "fast":
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.connect((host, port))
                    s.sendall(f"GET /events?{query} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
                    s.setblocking(False)
                except OSError:
                    continue
                live[s] = (now + rnd.uniform(1, 10), mode, 0.0)
                if mode != "never":
                    sel.register(s, selectors.EVENT_READ)
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                end, mode, next_read = live[s]
                if mode == "slow" and now < next_read:
                    continue
                try:
                    data = s.recv(1024 if mode == "slow" else 1 << 16)
                except OSError:
                    data = b""
                if not data:
                    end = 0
                live[s] = (end, mode, now + 1.0)
            for s, (end, mode, _) in list(live.items()):
                if now >= end:
                    if mode != "never":
                        sel.unregister(s)
                    s.close()
                    del live[s]

    threads = [threading.Thread(target=publisher, args=(i,), daemon=True) for i in range(4)]
    threads.append(threading.Thread(target=churn, args=(99,), daemon=True))
    for t in threads:
        t.start()
    started = time.time()
    samples = []
    print(f"{'minute':>7} {'RSS MiB':>8}", flush=True)
    while time.time() < stop:
        time.sleep(min(args.sample, max(0.1, stop - time.time())))
        minute = (time.time() - started) / 60
        kb = rss_kb()
        samples.append((minute, kb / 1024))
        print(f"{minute:7.1f} {kb / 1024:8.1f}", flush=True)
    for t in threads:
        t.join(timeout=15)
    proc.terminate()
    proc.wait(timeout=10)
    settled = [s for s in samples if s[0] >= args.minutes / 5]
    if len(settled) >= 2:
        xs = [m for m, _ in settled]
        ys = [r for _, r in settled]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(
            1e-9, sum((x - mx) ** 2 for x in xs)
        )
        print(
            f"once the history is full (from minute {xs[0]:.1f}): RSS {min(ys):.1f} to "
            f"{max(ys):.1f} MiB, drift {slope:+.3f} MiB a minute"
        )


if __name__ == "__main__":
    main()
