#!/usr/bin/env python3
"""Before/after on a noisy machine: several builds of iocd, interleaved.

    benches/interleave.py CORPUS_DIR [--sets 1k,100k,full] [--rounds 3] NAME=BINARY...

Each round runs `iocd scan --threads 1` of every build once per set, so a
slow minute of the shared machine falls on all builds alike. Prints, per set
and build, the best and median scan-phase MB/s (iocd's own figure) and the
hits, which must agree between builds. Reported, never asserted.
"""
import argparse
import collections
import os
import re
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--sets", default="100k")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("builds", nargs="+", help="NAME=BINARY")
    a = ap.parse_args()
    builds = [b.split("=", 1) for b in a.builds]
    sets = a.sets.split(",")
    speeds, hits = collections.defaultdict(list), collections.defaultdict(set)
    for _ in range(a.rounds):
        for s in sets:
            for name, binary in builds:
                err = subprocess.run(
                    [binary, "scan", "--threads", "1", "-i", os.path.join(a.corpus, f"ind-{s}.txt"),
                     os.path.join(a.corpus, "logs.txt")],
                    capture_output=True, text=True, check=True).stderr
                m = re.search(r"\(([0-9.]+) MB/s\), (\d+) hits", err)
                speeds[(name, s)].append(float(m.group(1)))
                hits[s].add(m.group(2))
    width = max(len(n) for n, _ in builds)
    for s in sets:
        agree = "hits agree" if len(hits[s]) == 1 else "HITS DIFFER"
        print(f"== {s}: best / median of {a.rounds} rounds, MB/s; {agree}: {', '.join(sorted(hits[s]))}")
        for name, _ in builds:
            v = sorted(speeds[(name, s)])
            print(f"{name:{width}} {v[-1]:7.0f} {v[len(v) // 2]:7.0f}")


if __name__ == "__main__":
    main()
