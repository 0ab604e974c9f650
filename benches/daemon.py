#!/usr/bin/env python3
"""Daemon benchmarks on the make_corpus.py corpus (reported, never asserted).

    benches/daemon.py CORPUS_DIR

1. Throughput: `iocd run` with a TCP source and a file sink, 100k indicators,
   the corpus sent three times over one loopback connection as fast as it
   will take it; against `iocd scan` on the same bytes (the file three
   times), and against loopback TCP with no work on either end (the same
   sender, a reader that throws the bytes away): the ceiling for any
   receiver on this machine. IOCD_DAEMON_THREADS=N sets the daemon's
   matcher threads (`[engine] threads`) for this part.
2. Reload under load: the same stream, and halfway through, the feed is
   replaced by the ~950k set (write aside, rename over) after the first of
   four passes over the corpus. Reports whether
   every line was scanned exactly once (lines scanned == lines sent, hits ==
   what the two engines give), the reload's build time, and the p99 line
   latency from iocd's own histogram.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IOCD = os.environ.get("IOCD_BIN", os.path.join(ROOT, "target", "release", "iocd"))
SENT = 'iocd_sink_events_sent_total{sink="hits"}'
RELOADED = 'iocd_reloads_total{result="success"}'


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metrics(port):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def quantile(m, name, q):
    """A quantile from a Prometheus histogram's cumulative buckets."""
    buckets = sorted((float(k.split('le="')[1].split('"')[0].replace("+Inf", "inf")), v) for k, v in m.items() if k.startswith(name + "_bucket"))
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


def start(workdir, feed, port, mport, extra=""):
    feeds = os.path.join(workdir, "feeds")
    os.makedirs(feeds, exist_ok=True)
    shutil.copy(feed, os.path.join(feeds, "feed.txt"))
    conf = os.path.join(workdir, "iocd.toml")
    with open(conf, "w") as f:
        f.write(f'[feeds.bench]\npath = "{feeds}"\n[sources.tcp]\ntype = "tcp"\naddress = "127.0.0.1:{port}"\n'
                f'[sinks.hits]\ntype = "file"\npath = "{workdir}/hits.jsonl"\n[metrics]\naddress = "127.0.0.1:{mport}"\n'
                f'[reload]\ninterval_secs = 3600\ndebounce_ms = 200\n[log]\nlevel = "warn"\n{extra}')
    p = subprocess.Popen([IOCD, "run", "-c", conf], stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{mport}/ready", timeout=1).status == 200:
                return p, feeds
        except Exception:
            time.sleep(0.05)
    raise SystemExit("iocd did not become ready")


def stream(port, log, passes=1, after_first=None):
    """Sends the log `passes` times over one connection; calls `after_first` after the first pass."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        for n in range(passes):
            with open(log, "rb") as f:
                s.sendfile(f)
            if n == 0 and after_first:
                after_first()


def loopback(log, passes):
    """Seconds to send the log `passes` times over loopback TCP, as `stream`
    does, to a reader that only counts the bytes."""
    srv = socket.create_server(("127.0.0.1", 0))
    got = [0]

    def drain():
        c, _ = srv.accept()
        buf = memoryview(bytearray(1 << 20))
        with c:
            while (n := c.recv_into(buf)) > 0:
                got[0] += n

    reader = threading.Thread(target=drain)
    reader.start()
    t = time.time()
    stream(srv.getsockname()[1], log, passes)
    reader.join()
    srv.close()
    return time.time() - t


def wait_scanned(mport, lines):
    while metrics(mport).get("iocd_lines_scanned_total", 0) < lines:
        time.sleep(0.01)


def corpus_log(corpus):
    """The corpus's logs.txt: its path, bytes and lines."""
    log = os.path.join(corpus, "logs.txt")
    with open(log, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
    return log, os.path.getsize(log), lines


def main():
    corpus = sys.argv[1]
    log, size, lines = corpus_log(corpus)
    if "IOCD_BIN" not in os.environ:  # a named binary is measured as it is
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    print(f"# corpus {size} bytes, {lines} lines; {os.cpu_count()} cores")

    # 1. TCP in, file out, against `iocd scan` and bare loopback TCP.
    passes = 3
    t = time.time()
    r = subprocess.run([IOCD, "scan", "-i", os.path.join(corpus, "ind-100k.txt")] + [log] * passes,
                       capture_output=True, text=True)
    scan_wall = time.time() - t
    scan_line = [l for l in r.stderr.splitlines() if "scanned" in l][-1]
    scan_phase = float(scan_line.split("(")[1].split(" MB/s")[0])
    print(f"iocd scan 100k, {passes} x corpus: wall {scan_wall:.2f} s "
          f"({passes * size / 1e6 / scan_wall:.0f} MB/s); {scan_line}")
    print(f"loopback TCP, no work, {passes} x corpus: {passes * size / 1e6 / loopback(log, passes):.0f} MB/s")
    with tempfile.TemporaryDirectory() as wd:
        port, mport = free_port(), free_port()
        threads = os.environ.get("IOCD_DAEMON_THREADS")
        extra = f"[engine]\nthreads = {int(threads)}\n" if threads else ""
        p, _ = start(wd, os.path.join(corpus, "ind-100k.txt"), port, mport, extra)
        t = time.time()
        stream(port, log, passes=passes)
        wait_scanned(mport, lines * passes)
        while metrics(mport).get(SENT, 0) < 5229 * passes:
            time.sleep(0.01)
        wall = time.time() - t
        m = metrics(mport)
        p.terminate()
        p.wait()
        rate = passes * size / 1e6 / wall
        print(f"iocd run 100k, TCP in, file out, {passes} x corpus, matcher threads {threads or 'default'}: {wall:.2f} s = {rate:.0f} MB/s "
              f"({100 * scan_wall / wall:.0f}% of iocd scan's wall time, {100 * rate / scan_phase:.0f}% of "
              f"its scan phase); hits {m.get(SENT)}, "
              f"p99 line latency {quantile(m, 'iocd_match_latency_seconds', 0.99) * 1000:.1f} ms")

    # 2. Reload to the full set while streaming.
    with tempfile.TemporaryDirectory() as wd:
        port, mport = free_port(), free_port()
        p, feeds = start(wd, os.path.join(corpus, "ind-100k.txt"), port, mport)
        reloaded = {}

        def swap():
            reloaded["at"] = time.time()
            shutil.copy(os.path.join(corpus, "ind-full.txt"), os.path.join(feeds, ".feed.tmp"))
            os.rename(os.path.join(feeds, ".feed.tmp"), os.path.join(feeds, "feed.txt"))

        t = time.time()
        passes = 8
        stream(port, log, passes=passes, after_first=swap)
        wait_scanned(mport, lines * passes)
        while metrics(mport).get(RELOADED, 0) < 1:
            time.sleep(0.05)
        wall = time.time() - t
        time.sleep(0.5)  # let the last hits reach the file sink before reading counters
        m = metrics(mport)
        p.terminate()
        p.wait()
        scanned = m.get("iocd_lines_scanned_total")
        lines, size = lines * passes, size * passes
        print(f"reload 100k -> {int(sum(v for k, v in m.items() if k.startswith('iocd_indicators_loaded')))} indicators while streaming: "
              f"lines sent {lines}, scanned {int(scanned)} ({'none lost, none twice' if scanned == lines else 'MISMATCH'}); "
              f"reload {m.get('iocd_reload_duration_seconds_sum'):.2f} s (engine build {m.get('iocd_engine_build_seconds'):.2f} s incl. feed parse); "
              f"stream {wall:.2f} s = {size / 1e6 / wall:.0f} MB/s; hits {int(m.get(SENT, 0))} "
              f"(per pass: 5229 with 100k, 43998 with the full set); p99 line latency {quantile(m, 'iocd_match_latency_seconds', 0.99) * 1000:.1f} ms, "
              f"p99.9 {quantile(m, 'iocd_match_latency_seconds', 0.999) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
