#!/usr/bin/env python3
"""Issue 7's findings, replayed against a binary: outcome, peak RSS, time.

    benches/findings.py [CORPUS_DIR] [--only NAME,...]    (IOCD_BIN picks the binary)

Each finding of the hardening issue is played as an attacker would play it
against `iocd scan`, `iocd check` or `iocd run`, and reported as one row:
what happened, the process's peak RSS (from wait4, or VmHWM while it runs)
and the time the finding is about. Run it once per build to compare:

    IOCD_BIN=/tmp/iocd-before benches/findings.py /tmp/corpus > before.md
    IOCD_BIN=target/release/iocd benches/findings.py /tmp/corpus > after.md

It reports and never asserts: the regression tests in tests/ assert. A
build that predates a setting gets the same attack with its defaults.
Every wait is bounded; a process past MEMORY_CAP is killed and reported as
such, so a build that grows without bound cannot take the machine down.
CORPUS_DIR (benches/make_corpus.py's output) is needed by the rows that
measure throughput or reload a large feed; they are left out without it.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IOCD = os.environ.get("IOCD_BIN", os.path.join(ROOT, "target", "release", "iocd"))
MEMORY_CAP = 4 << 30  # bytes of RSS past which a run is killed
HIT_IP = "45.155.205.233"  # the indicator every benign stream carries


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """A child with its peak RSS (VmHWM, polled) and CPU time, killed past MEMORY_CAP."""

    def __init__(self, args, stdin=None, stdout=subprocess.DEVNULL, preexec=None):
        self.err = tempfile.TemporaryFile()
        # wait4's ru_maxrss counts the RSS this (Python) process had when
        # the child exec'd: only a figure above that is the child's own.
        self.parent_hwm = own_hwm()
        self.p = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=self.err, preexec_fn=preexec)
        self.started = time.monotonic()
        self.capped = False
        self.hwm = 0
        self.rusage = None
        self.status = None
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while self.status is None:
            try:
                with open(f"/proc/{self.p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.hwm = max(self.hwm, int(line.split()[1]) * 1024)
                        elif line.startswith("VmRSS:") and int(line.split()[1]) * 1024 > MEMORY_CAP:
                            self.capped = True
                            os.kill(self.p.pid, signal.SIGKILL)
            except (OSError, ValueError):
                return
            time.sleep(0.01)

    def alive(self):
        """Whether it runs; never reaps it (wait4 below needs its rusage)."""
        if self.status is not None:
            return False
        return os.waitid(os.P_PID, self.p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def cpu(self):
        """CPU seconds so far (user + system)."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait(self, timeout):
        """Waits up to `timeout` s, then kills; returns the outcome text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                return self._reaped(status, ru, hung=False)
            time.sleep(0.01)
        os.kill(self.p.pid, signal.SIGKILL)
        _, status, ru = os.wait4(self.p.pid, 0)
        return self._reaped(status, ru, hung=True)

    def _reaped(self, status, ru, hung):
        self.status = status
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = ru
        if ru.ru_maxrss * 1024 > self.parent_hwm:
            self.hwm = max(self.hwm, ru.ru_maxrss * 1024)
        self.elapsed = time.monotonic() - self.started
        code = self.p.returncode
        if self.capped:
            return f"killed past {MEMORY_CAP >> 30} GiB RSS"
        if hung:
            return "still running (killed)"
        if code < 0:
            return f"died of {signal.Signals(-code).name}"
        return f"exit {code}"

    def stop(self, timeout=30):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")


def own_hwm():
    """This process's peak RSS in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


def stix_bundle(path, patterns, kind="indicator"):
    objects = [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{i:012d}",
                "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z", "valid_from": "2024-01-01T00:00:00Z",
                "pattern_type": "stix", "pattern": p} for i, p in enumerate(patterns)]
    return write(path, json.dumps({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects}))


def scan(args, stdin=None, stdout=subprocess.PIPE, timeout=60):
    """Runs `iocd scan ARGS`; returns (outcome, hits, proc)."""
    p = Proc([IOCD, "scan", *args], stdin=stdin, stdout=subprocess.PIPE if stdout == subprocess.PIPE else stdout)
    out = []
    if stdout == subprocess.PIPE:
        threading.Thread(target=lambda: out.append(p.p.stdout.read()), daemon=True).start()
    outcome = p.wait(timeout)
    time.sleep(0.05)
    hits = out[0].count(b"\n") if out else None
    return outcome, hits, p


def mb(n):
    return f"{n / (1 << 20):,.0f} MB"


class Daemon:
    """`iocd run` on a config of a TCP source, a file sink and a feed folder."""

    def __init__(self, work, feed_text=HIT_IP + "\n", extra="", sources=None, sinks=None, preexec=None, wait_ready=True):
        self.work = work
        self.port, self.mport = free_port(), free_port()
        self.feeds = os.path.join(work, "feeds")
        os.makedirs(self.feeds, exist_ok=True)
        if feed_text is not None:
            write(os.path.join(self.feeds, "feed.txt"), feed_text)
        self.hits = os.path.join(work, "hits.jsonl")
        sources = sources if sources is not None else f'[sources.tcp]\ntype = "tcp"\naddress = "127.0.0.1:{self.port}"\n'
        sinks = sinks if sinks is not None else f'[sinks.hits]\ntype = "file"\npath = "{self.hits}"\n'
        self.conf = write(os.path.join(work, "iocd.toml"),
                          f'state_dir = "{work}/state"\n{extra}\n[feeds.bench]\npath = "{self.feeds}"\n{sources}{sinks}'
                          f'[metrics]\naddress = "127.0.0.1:{self.mport}"\n[log]\nlevel = "warn"\n')
        self.proc = Proc([IOCD, "run", "-c", self.conf], preexec=preexec)
        self.ready_after = None
        if wait_ready:
            self.ready_after = self.wait_ready(60)

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def wait_ready(self, timeout):
        """Seconds until /ready said 200, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.alive():
            if self.get("/ready")[0] == 200:
                return time.monotonic() - self.proc.started
            time.sleep(0.05)
        return None

    def metric(self, name):
        status, body = self.get("/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total if status == 200 else None

    def wait_metric(self, name, at_least, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.alive():
            value = self.metric(name)
            if value is not None and value >= at_least:
                return value
            time.sleep(0.05)
        return self.metric(name)

    def hit_lines(self):
        try:
            with open(self.hits, "rb") as f:
                return f.read().count(b"\n")
        except OSError:
            return 0

    def send(self, data, timeout=10):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)

    def hit_from_another_client(self, timeout=15):
        """Whether a fresh client's line gets a hit within `timeout` s. It
        sends again each second on a new connection, as a log shipper
        reconnects after its connection was closed."""
        before = self.hit_lines()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.send(f"ping from {HIT_IP}\n".encode(), timeout=2)
            except OSError:
                pass
            for _ in range(20):
                if self.hit_lines() > before:
                    return True
                time.sleep(0.05)
        return False


# --- the findings -----------------------------------------------------------

def stix_nesting(work, corpus):
    depth = 1800
    feed = stix_bundle(f"{work}/deep.json", ["(" * depth + "[ipv4-addr:value = '1.2.3.4']" + ")" * depth,
                                             f"[ipv4-addr:value = '{HIT_IP}']"])
    log = write(f"{work}/log", f"a {HIT_IP} b\n")
    outcome, hits, p = scan(["-i", feed, log])
    return f"{outcome}, {hits} hits", p.hwm, p.elapsed


def regex_set_overflow(work, corpus):
    patterns = [f"[url:value MATCHES '\\\\w{{60}}q{i}']" for i in range(400)] + [f"[ipv4-addr:value = '{HIT_IP}']"]
    feed = stix_bundle(f"{work}/regex.json", patterns)
    log = write(f"{work}/log", f"a {HIT_IP} b\n")
    outcome, hits, p = scan(["-i", feed, log])
    return f"{outcome}, {hits} hits (the IP's)", p.hwm, p.elapsed


def slow_regex(work, corpus):
    feed = stix_bundle(f"{work}/regex.json", ["[url:value MATCHES '\\\\w{60}q']", f"[ipv4-addr:value = '{HIT_IP}']"])
    size = 32 << 20
    log = f"{work}/log"
    with open(os.path.join(corpus, "logs.txt"), "rb") as src, open(log, "wb") as dst:
        copied = 0
        for line in src:  # line by line: this process's own RSS bounds what can be measured
            dst.write(line)
            copied += len(line)
            if copied >= size:
                break
    outcome, hits, p = scan(["-q", "--threads", "1", "-i", feed, log], timeout=120)
    return f"{outcome}, {os.path.getsize(log) / p.elapsed / 1e6:,.0f} MB/s over 32 MB", p.hwm, p.elapsed


def octet_prefix(work, corpus):
    d = Daemon(work)
    sent = 0
    chunk = b"a" * (1 << 20)
    try:
        with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
            s.sendall(b"9999999999 <13>")
            for _ in range(1024):  # 1 GiB promised, never finished
                if not d.proc.alive():
                    break
                s.sendall(chunk)
                sent += len(chunk)
            other = d.hit_from_another_client()
            hwm = d.proc.hwm
    except OSError:
        other = False
        hwm = d.proc.hwm
    outcome = d.proc.stop()
    return f"{mb(sent)} sent; other client's hit: {other}; {outcome}", max(hwm, d.proc.hwm), None


def hits_memory(work, corpus):
    ips = [f"45.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(70000)]
    d = Daemon(work, feed_text="\n".join(ips) + "\n")
    line = (" ".join(ips) + "\n").encode()
    start = time.monotonic()
    for _ in range(3):
        d.send(line, timeout=60)
    scanned = d.wait_metric("iocd_lines_scanned_total", 3, 120)
    sent = d.wait_metric("iocd_sink_events_sent_total", 1, 60)
    elapsed = time.monotonic() - start
    hwm = d.proc.hwm
    outcome = d.proc.stop()
    return f"{scanned and int(scanned)} lines of 1 MB, {sent and int(sent):,} hits written; {outcome}", max(hwm, d.proc.hwm), elapsed


class Quiet(ThreadingHTTPServer):
    """A test server that does not print a client's reset connection."""
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class Taxii(BaseHTTPRequestHandler):
    """A TAXII 2.1 server whose objects/ endpoint misbehaves as `mode` says."""
    mode = "big"
    protocol_version = "HTTP/1.1"
    MEDIA = "application/taxii+json;version=2.1"

    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", self.MEDIA)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        try:
            if path == "/api1/":
                self.reply({"title": "hostile", "versions": ["application/taxii+json;version=2.1"], "max_content_length": 1 << 30})
            elif path == "/api1/collections/c1/":
                self.reply({"id": "c1", "title": "c1", "can_read": True, "can_write": False, "media_types": [self.MEDIA]})
            elif path == "/api1/collections/c1/objects/":
                getattr(self, "objects_" + Taxii.mode)()
            else:
                self.send_error(404)
        except OSError:
            pass

    def objects_big(self):
        # A 2 GB page: one envelope whose objects never end.
        self.send_response(200)
        self.send_header("Content-Type", self.MEDIA)
        self.send_header("Content-Length", str(2 << 30))
        self.end_headers()
        self.wfile.write(b'{"more": false, "objects": [')
        obj = json.dumps({"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-000000000001",
                          "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z",
                          "valid_from": "2024-01-01T00:00:00Z", "pattern_type": "stix",
                          "pattern": "[ipv4-addr:value = '45.1.2.3']", "description": "x" * 4000}).encode() + b","
        sent = 0
        while sent < (2 << 30) - len(obj):
            self.wfile.write(obj * 64)
            sent += len(obj) * 64

    def objects_more(self):
        self.reply({"more": True, "next": str(random.random()), "objects": [
            {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{random.randrange(1 << 40):012d}",
             "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z", "valid_from": "2024-01-01T00:00:00Z",
             "pattern_type": "stix", "pattern": "[ipv4-addr:value = '45.1.2.3']"}]})

    def objects_drip(self):
        self.send_response(200)
        self.send_header("Content-Type", self.MEDIA)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for b in b'{"more": false, "objects": [' + b" " * 99000:
            self.wfile.write(bytes([b]))
            self.wfile.flush()
            time.sleep(2)


def taxii(mode):
    def finding(work, corpus):
        Taxii.mode = mode
        server = Quiet(("127.0.0.1", 0), Taxii)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/api1/collections/c1/"
        d = Daemon(work, extra="shutdown_grace_secs = 5", wait_ready=False,
                   sinks=f'[sinks.hits]\ntype = "file"\npath = "{work}/hits.jsonl"\n[taxii.hostile]\nurl = "{url}"\n')
        ready = d.wait_ready(60)
        other = d.hit_from_another_client(5) if ready is not None else False
        polls = polls_ended(d, 0 if mode == "drip" else 20)
        term = time.monotonic()
        outcome = d.proc.stop(30)
        stopped = time.monotonic() - term
        server.shutdown()
        ready_text = f"ready after {ready:.1f} s" if ready is not None else "not ready in 60 s"
        return f"{ready_text}; a client's hit: {other}; {polls}; SIGTERM -> {outcome} in {stopped:.1f} s", d.proc.hwm, ready
    return finding


def polls_ended(d, timeout):
    """The TAXII polls that ended, by result, once one has (or timeout s)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = d.get("/metrics")
        ended = [line.split("{", 1)[1].replace('"', "").replace("}", "") for line in body.splitlines()
                 if line.startswith("iocd_taxii_polls_total{") and not line.endswith(" 0")]
        if ended or time.monotonic() >= deadline or not d.proc.alive():
            return "polls ended: " + (", ".join(ended) if ended else "none")
        time.sleep(0.1)


def scan_into_head(work, corpus):
    log = os.path.join(corpus, "logs.txt")
    head = subprocess.Popen(["head", "-5"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    outcome, _, p = scan(["-i", os.path.join(corpus, "ind-100k.txt"), log], stdout=head.stdin, timeout=30)
    head.stdin.close()
    head.wait()
    return outcome, p.hwm, p.elapsed


def config_value(setting):
    def finding(work, corpus):
        section, _, kv = setting.partition(".")
        d_port, m_port = free_port(), free_port()
        conf = write(f"{work}/iocd.toml", f'[feeds.f]\npath = "{write(f"{work}/feed.txt", HIT_IP + chr(10))}"\n'
                     f'[sources.tcp]\ntype = "tcp"\naddress = "127.0.0.1:{d_port}"\n[sinks.hits]\ntype = "file"\npath = "{work}/hits.jsonl"\n'
                     f'[metrics]\naddress = "127.0.0.1:{m_port}"\n[{section}]\n{kv}\n')
        check = Proc([IOCD, "check", "-c", conf])
        checked = check.wait(30)
        run = Proc([IOCD, "run", "-c", conf])
        # Give it a line, then see whether it is still up and answered.
        hit = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and run.alive() and not hit:
            try:
                with socket.create_connection(("127.0.0.1", d_port), timeout=2) as s:
                    s.sendall(f"x {HIT_IP}\n".encode())
                for _ in range(40):
                    if os.path.exists(f"{work}/hits.jsonl") and os.path.getsize(f"{work}/hits.jsonl"):
                        hit = True
                        break
                    time.sleep(0.05)
            except OSError:
                time.sleep(0.1)
        outcome = run.stop(15)
        panicked = "panicked" in run.stderr()
        return f"check: {checked}; run: {'hit served, ' if hit else ''}{outcome}{', panicked' if panicked else ''}", run.hwm, None
    return finding


def binary_feed(work, corpus):
    feed = f"{work}/random.txt"
    rng = random.Random(7)
    with open(feed, "wb") as f:  # in pieces: this process's own RSS bounds what can be measured
        for _ in range(20):
            f.write(rng.randbytes(1 << 20))
    p = Proc([IOCD, "check", "-c", write(f"{work}/iocd.toml", f'[feeds.random]\npath = "{feed}"\n[sources.in]\ntype = "stdin"\n[sinks.out]\ntype = "stdout"\n')], stdout=subprocess.PIPE)
    out = [b""]
    threading.Thread(target=lambda: out.__setitem__(0, p.p.stdout.read()), daemon=True).start()
    outcome = p.wait(120)
    time.sleep(0.05)
    report = (out[0].decode(errors="replace") + p.stderr()).strip().splitlines()
    said = next((line.strip() for line in report if "random" in line), report[-1] if report else "")
    return f"{outcome}: {said[:120]}", p.hwm, p.elapsed


def dev_zero_feed(work, corpus):
    log = write(f"{work}/log", f"a {HIT_IP}\n")
    outcome, hits, p = scan(["-i", "/dev/zero", log], timeout=60)
    return f"{outcome}: {said_of(p, 'zero')}", p.hwm, p.elapsed


def fifo_feed(work, corpus):
    os.mkfifo(f"{work}/fifo")
    log = write(f"{work}/log", f"a {HIT_IP}\n")
    outcome, hits, p = scan(["-i", f"{work}/fifo", log], timeout=10)
    return f"{outcome}: {said_of(p, 'fifo')}", p.hwm, p.elapsed


def said_of(p, name):
    """What the process said of `name`: its warning or error, if any."""
    lines = [line for line in p.stderr().splitlines() if name in line and ("warning" in line or "error" in line)]
    return lines[-1].replace("iocd: ", "")[:110] if lines else "nothing said"


def file_source(work, path, start="beginning"):
    return f'[sources.app]\ntype = "file"\npath = "{path}"\nstart_at = "{start}"\n'


def truncate_rewrite(work, corpus):
    log = f"{work}/app.log"
    lines = "".join(f"line {i:05d} from {HIT_IP}\n" for i in range(1000))
    write(log, lines)
    d = Daemon(work, sources=file_source(work, log))
    d.wait_metric("iocd_sink_events_sent_total", 1000, 30)
    # Truncate and write as much again at once, within one poll.
    with open(log, "w") as f:
        f.write(lines.replace("line", "LINE"))
    got = d.wait_metric("iocd_sink_events_sent_total", 2000, 15)
    outcome = d.proc.stop()
    return f"{int(got or 0) - 1000} of the rewritten 1,000 lines hit; {outcome}", d.proc.hwm, None


def symlink_planted(work, corpus):
    secret = write(f"{work}/shadow", f"root:{HIT_IP}:secret\n")
    log = f"{work}/app.log"
    os.symlink(secret, log)
    d = Daemon(work, sources=file_source(work, log))
    got = d.wait_metric("iocd_sink_events_sent_total", 1, 5)
    outcome = d.proc.stop()
    said = [line for line in d.proc.stderr().splitlines() if "symbolic link" in line.lower() or "symlink" in line.lower()]
    return f"{int(got or 0)} lines of the link's target read; {'warned' if said else 'no warning'}; {outcome}", d.proc.hwm, None


def udp_burst(work, corpus):
    port = free_port()
    d = Daemon(work, sources=f'[sources.udp]\ntype = "udp"\naddress = "127.0.0.1:{port}"\n')
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    total = 20000
    start = time.monotonic()
    for i in range(total):
        s.sendto(f"<13>datagram {i} from {HIT_IP}".encode(), ("127.0.0.1", port))
    got = d.wait_metric("iocd_lines_scanned_total", total, 15)
    # Nothing more arrives once the count has stood still.
    time.sleep(1)
    got = d.metric("iocd_lines_scanned_total") or 0
    elapsed = time.monotonic() - start
    outcome = d.proc.stop()
    return f"{int(got):,} of {total:,} datagrams scanned ({100 - 100 * got / total:.0f}% lost); {outcome}", d.proc.hwm, elapsed


def out_of_descriptors(work, corpus):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    d = Daemon(work, preexec=limit)
    held = []
    for _ in range(100):
        try:
            held.append(socket.create_connection(("127.0.0.1", d.port), timeout=2))
        except OSError:
            break
    time.sleep(0.5)
    cpu0 = d.proc.cpu()
    time.sleep(5)
    burn = d.proc.cpu() - cpu0
    for s in held:
        s.close()
    outcome = d.proc.stop()
    warnings = sum(1 for line in d.proc.stderr().splitlines() if "descriptor" in line.lower() or "too many open" in line.lower())
    return f"{len(held)} connections held past the limit: {burn / 5:.0%} of a core; {warnings} warning lines; {outcome}", d.proc.hwm, burn


class Continue(BaseHTTPRequestHandler):
    """Answers every POST with `100 Continue` before its `200 OK`."""
    posts = 0
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Continue.posts += 1
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.wfile.flush()


def http_continue(work, corpus):
    Continue.posts = 0
    server = Quiet(("127.0.0.1", 0), Continue)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hits"
    d = Daemon(work, sinks=f'[sinks.hits]\ntype = "http"\nurl = "{url}"\nbatch_timeout_ms = 10\nmax_backoff_secs = 1\n')
    d.send(f"one line from {HIT_IP}\n".encode())
    time.sleep(5)
    sent = d.metric("iocd_sink_events_sent_total")
    outcome = d.proc.stop()
    server.shutdown()
    return f"1 hit: {Continue.posts} POSTs in 5 s, {int(sent or 0)} counted sent; {outcome}", d.proc.hwm, None


def http_no_newline(work, corpus):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = [0]

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted[0] += 1
            conn.settimeout(0.5)
            try:
                conn.recv(1 << 20)
                conn.sendall(b"HTTP/1.1 200")  # and nothing more: closed
            except OSError:
                pass
            conn.close()
    stop = threading.Event()
    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hits"
    d = Daemon(work, sinks=f'[sinks.hits]\ntype = "http"\nurl = "{url}"\nbatch_timeout_ms = 10\n', extra="shutdown_grace_secs = 5")
    d.send(f"one line from {HIT_IP}\n".encode())
    time.sleep(1)
    cpu0 = d.proc.cpu()
    time.sleep(5)
    burn = d.proc.cpu() - cpu0
    term = time.monotonic()
    outcome = d.proc.stop()
    outcome += f" {time.monotonic() - term:.1f} s after SIGTERM (grace 5 s)"
    stop.set()
    listener.close()
    return f"status lines cut short: {accepted[0]} requests in 5 s, {burn / 5:.0%} of a core; {outcome}", d.proc.hwm, burn


def sigterm_in_reload(work, corpus):
    os.makedirs(f"{work}/feeds")
    shutil.copyfile(os.path.join(corpus, "ind-100k.txt"), f"{work}/feeds/feed.txt")
    d = Daemon(work, feed_text=None, extra="shutdown_grace_secs = 2", wait_ready=False)
    d.wait_ready(120)
    shutil.copyfile(os.path.join(corpus, "ind-full.txt"), os.path.join(d.work, "next.txt"))
    os.rename(os.path.join(d.work, "next.txt"), os.path.join(d.feeds, "feed.txt"))
    d.proc.p.send_signal(signal.SIGHUP)  # reload now, not after the watcher's debounce
    time.sleep(1.5)  # the 948k build takes several seconds: it is under way
    term = time.monotonic()
    outcome = d.proc.stop(120)
    took = time.monotonic() - term
    return f"SIGTERM 1.5 s into a 948k reload (grace 2 s): {outcome} after {took:.1f} s", d.proc.hwm, took


def slowloris(work, corpus):
    d = Daemon(work, sources=f'[sources.tcp]\ntype = "tcp"\naddress = "127.0.0.1:{free_port()}"\nmax_connections = 64\n')
    port = int(open(d.conf).read().split('address = "127.0.0.1:')[1].split('"')[0])
    d.port = port
    idle = []
    for _ in range(64):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"<")
        idle.append(s)
    time.sleep(0.5)
    start = time.monotonic()
    got = d.hit_from_another_client(30)
    took = time.monotonic() - start
    for s in idle:
        s.close()
    outcome = d.proc.stop()
    return f"64 of 64 connections idle: a sender's hit {'after %.1f s' % took if got else 'never (30 s)'}; {outcome}", d.proc.hwm, took if got else None


FINDINGS = [
    ("stix_nesting", "1,800 nested ( in a STIX pattern", stix_nesting),
    ("regex_set_overflow", "400 valid \\w{60}q regexes", regex_set_overflow),
    ("slow_regex", "one \\w{60}q regex, scan of 32 MB", slow_regex),
    ("octet_prefix", "9999999999 <13> then 1 GiB", octet_prefix),
    ("hits_memory", "1 MB line of 70k indicators, 3 times", hits_memory),
    ("taxii_big_page", "TAXII page of 2 GB", taxii("big")),
    ("taxii_endless_more", "TAXII more: true for ever", taxii("more")),
    ("taxii_drip", "TAXII answer a byte every 2 s", taxii("drip")),
    ("scan_into_head", "iocd scan ... \\| head -5", scan_into_head),
    ("queue_batches", "queue_batches = 2^62", config_value("engine.queue_batches = 4611686018427387904")),
    ("batch_lines", "batch_lines = 2^63", config_value("engine.batch_lines = 9223372036854775807")),
    ("threads", "threads = 100000", config_value("engine.threads = 100000")),
    ("reload_interval", "reload.interval_secs = u64::MAX", config_value("reload.interval_secs = 18446744073709551615")),
    ("binary_feed", "20 MB of random bytes as a feed", binary_feed),
    ("dev_zero_feed", "/dev/zero as a feed", dev_zero_feed),
    ("fifo_feed", "a FIFO as a feed", fifo_feed),
    ("truncate_rewrite", "log truncated and rewritten in one poll", truncate_rewrite),
    ("symlink_planted", "symlink planted at the log path", symlink_planted),
    ("udp_burst", "20,000 UDP datagrams at once", udp_burst),
    ("out_of_descriptors", "accepting with RLIMIT_NOFILE 64", out_of_descriptors),
    ("http_continue", "HTTP sink answered 100 Continue", http_continue),
    ("http_no_newline", "HTTP sink status line without newline", http_no_newline),
    ("sigterm_in_reload", "SIGTERM during a reload", sigterm_in_reload),
    ("slowloris", "slowloris at the connection limit", slowloris),
]
NEEDS_CORPUS = {"slow_regex", "scan_into_head", "sigterm_in_reload"}


def main():
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        i = args.index("--only")
        only = set(args[i + 1].split(","))
        del args[i:i + 2]
    corpus = args[0] if args else None
    print(f"`{IOCD}` ({subprocess.run([IOCD, '--version'], capture_output=True, text=True).stdout.strip()})\n")
    print("| finding | what happened | peak RSS | seconds |")
    print("|---|---|---|---|")
    for name, title, run in FINDINGS:
        if only and name not in only:
            continue
        if name in NEEDS_CORPUS and not corpus:
            print(f"| {title} | skipped: needs CORPUS_DIR | | |", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"iocd-{name}-") as work:
            try:
                what, rss, secs = run(work, corpus)
            except Exception as e:  # a finding that could not be played is a row too
                what, rss, secs = f"could not play: {type(e).__name__}: {e}", 0, None
        secs_text = f"{secs:.1f}" if isinstance(secs, float) else ""
        # A child that ends within a poll and stays under this process's own
        # peak has no exact figure (see Proc): only its bound is known.
        bound = own_hwm()
        rss_text = mb(rss) if rss >= bound else f"< {mb(bound)}"
        print(f"| {title} | {what} | {rss_text} | {secs_text} |", flush=True)


if __name__ == "__main__":
    main()
