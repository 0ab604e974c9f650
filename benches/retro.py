#!/usr/bin/env python3
"""Retro-hunt benchmarks on the make_corpus.py corpus (reported, never asserted).

    benches/retro.py CORPUS_DIR

1. Ring write cost: `iocd run` (TCP in, file out, 100k indicators) on the
   corpus, without and with `[retro]`; the throughput of each, the lines
   the ring could not keep up with, and the ring's bytes per GB of log.
2. Retro scan speed: the indicators of the full set that the 100k set does
   not have are added while the ring holds the corpus; the scan's MB/s from
   iocd's own counters.
3. Live traffic during a retro scan: the corpus streamed again while the
   scan runs; its throughput against (1).
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon  # noqa: E402
from daemon import IOCD, free_port, metrics, stream, wait_scanned  # noqa: E402


def start(workdir, feed, port, mport, retro):
    extra = f'[retro]\ndir = "{workdir}/ring"\nmax_bytes = 4294967296\n' if retro else ""
    return daemon.start(workdir, feed, port, mport, extra)


def ring_bytes(wd):
    d = os.path.join(wd, "ring")
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) if os.path.isdir(d) else 0


def run(corpus, log, size, lines, retro, hunt=False):
    with tempfile.TemporaryDirectory() as wd:
        port, mport = free_port(), free_port()
        p, feeds = start(wd, os.path.join(corpus, "ind-100k.txt"), port, mport, retro)
        t = time.time()
        stream(port, log)
        wait_scanned(mport, lines)
        wall = time.time() - t
        m = metrics(mport)
        out = {"wall": wall, "mbps": size / 1e6 / wall, "dropped": m.get("iocd_retro_lines_dropped_total", 0)}
        if hunt:
            # New values: in the full set, not in the 100k set.
            with open(os.path.join(corpus, "ind-100k.txt")) as f:
                old = set(f.read().split())
            with open(os.path.join(corpus, "ind-full.txt")) as f:
                new = [v for v in f.read().split() if v not in old]
            # Let the writer catch up, then add them.
            time.sleep(1)
            out["ring_bytes"] = ring_bytes(wd)
            # Written beside the feed folder and renamed in: one change, one reload.
            with open(os.path.join(wd, "new.tmp"), "w") as f:
                f.write("\n".join(new) + "\n")
            os.rename(os.path.join(wd, "new.tmp"), os.path.join(feeds, "new.txt"))
            # Live traffic while the scan runs.
            while metrics(mport).get("iocd_reloads_total{result=\"success\"}", 0) < 1:
                time.sleep(0.05)
            t = time.time()
            stream(port, log)
            wait_scanned(mport, 2 * lines)
            out["live_during_hunt_mbps"] = size / 1e6 / (time.time() - t)
            while metrics(mport).get("iocd_retro_scan_seconds_count", 0) < 1:
                time.sleep(0.1)
            m = metrics(mport)
            out["new_indicators"] = len(new)
            out["scan_bytes"] = m.get("iocd_retro_scan_bytes_total", 0)
            out["scan_seconds"] = m.get("iocd_retro_scan_seconds_sum", 0)
            out["retro_hits"] = m.get("iocd_retro_hits_total", 0)
        p.terminate()
        p.wait()
        return out


def main():
    corpus = sys.argv[1]
    log, size, lines = daemon.corpus_log(corpus)
    print(f"# corpus {size} bytes, {lines} lines; {os.cpu_count()} cores; {IOCD}")
    base = run(corpus, log, size, lines, retro=False)
    print(f"without [retro]: {base['wall']:.2f} s = {base['mbps']:.0f} MB/s")
    r = run(corpus, log, size, lines, retro=True, hunt=True)
    kept = 1 - r["dropped"] / lines
    print(f"with [retro]: {r['wall']:.2f} s = {r['mbps']:.0f} MB/s ({100 * r['mbps'] / base['mbps']:.0f}% of without); "
          f"lines not kept by the ring (writer behind): {int(r['dropped'])} ({100 * (1 - kept):.1f}%)")
    print(f"ring: {r['ring_bytes']} bytes for {size * kept / 1e9:.3f} GB of lines kept = "
          f"{r['ring_bytes'] / (size * kept / 1e9) / 1e6:.0f} MB per GB of log (zstd level 1)")
    print(f"retro scan: {r['new_indicators']} new indicators, {r['scan_bytes'] / 1e6:.0f} MB in {r['scan_seconds']:.2f} s "
          f"= {r['scan_bytes'] / 1e6 / max(r['scan_seconds'], 1e-9):.0f} MB/s, {int(r['retro_hits'])} retro hits")
    print(f"live traffic during the retro scan: {r['live_during_hunt_mbps']:.0f} MB/s "
          f"({100 * r['live_during_hunt_mbps'] / base['mbps']:.0f}% of without [retro])")


if __name__ == "__main__":
    main()
