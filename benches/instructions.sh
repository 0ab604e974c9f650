#!/usr/bin/env bash
# Instructions per byte of `iocd scan --threads 1` on the benchmark corpus,
# counted by valgrind's cachegrind: deterministic where timings on a shared
# machine are not. The difference of a 48 MB and a 16 MB run cancels the
# feed load, so the figure is the scan's (read, split, match, write).
#
#   benches/instructions.sh CORPUS_DIR [SET] [IOCD_BINARY]
#
# SET: 1k, 10k, 100k (default) or full. Needs valgrind. Reported, never asserted.
set -euo pipefail
corpus=${1:?usage: benches/instructions.sh CORPUS_DIR [SET] [IOCD_BINARY]}
set=${2:-100k}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${3:-}
if [ -z "$bin" ]; then
  (cd "$here" && cargo build --release --quiet)
  bin=$here/target/release/iocd
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Whole lines only: the last, cut one is dropped.
head -c $((16 << 20)) "$corpus/logs.txt" | head -n -1 > "$work/16.txt"
head -c $((48 << 20)) "$corpus/logs.txt" | head -n -1 > "$work/48.txt"
count() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$bin" scan --threads 1 -i "$corpus/ind-$set.txt" "$1" 2>&1 >/dev/null \
    | awk '/I +refs/ { gsub(",", "", $NF); print $NF }'
}
small=$(count "$work/16.txt")
large=$(count "$work/48.txt")
bytes=$(( $(stat -c %s "$work/48.txt") - $(stat -c %s "$work/16.txt") ))
awk -v a="$small" -v b="$large" -v n="$bytes" -v s="$set" \
  'BEGIN { printf "%s: %.2f instructions per byte\n", s, (b - a) / n }'
