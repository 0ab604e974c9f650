#!/usr/bin/env bash
# Peer comparison on the benchmark corpus, in one run on this machine:
# iocd scan against Hyperscan (C and Python), rg -F -f and grep -F -f.
#
#   benches/peers.sh CORPUS_DIR [SETS...]     (SETS default: 100k full)
#
# CORPUS_DIR is the output of ../shared/bench/make_corpus.py. Needs
# libhyperscan-dev, python3 -m pip install hyperscan, ripgrep; set
# IOCD_PEER_TIMEOUT (seconds, default 300) to bound the slow peers.
# Prints one line per tool and set: wall seconds, peak RSS, and what the tool
# itself reports (iocd: its scan phase alone, with 1 thread and with all).
# Speed is reported, never asserted. IOCD_BIN=PATH measures another build
# of iocd (a before/after comparison) instead of building this one.
set -euo pipefail
corpus=${1:?usage: benches/peers.sh CORPUS_DIR [SETS...]}
shift
if [ $# -gt 0 ]; then sets=("$@"); else sets=(100k full); fi
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared
limit=${IOCD_PEER_TIMEOUT:-300}
log=$corpus/logs.txt
bytes=$(stat -c %s "$log")

if [ -z "${IOCD_BIN:-}" ]; then
  (cd "$here" && cargo build --release --quiet)
  IOCD_BIN=$here/target/release/iocd
fi
hs_c=$(mktemp -d)/hs_bench
cc -O2 -o "$hs_c" "$shared/bench/hs_bench.c" -lhs

measure() { # name set cmd...: wall seconds and peak RSS of cmd, and the last line it printed
  local name=$1 set=$2
  shift 2
  local t; t=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$t" timeout "$limit" "$@" >/tmp/peers.out 2>&1 || echo "(exit $?, timeout ${limit}s)" >>/tmp/peers.out
  local wall rss
  read -r wall rss < <(tail -n 1 "$t")
  rm -f "$t"
  printf '%-6s %-5s wall_s %-7s MB/s_wall %-6s peak_MiB %-6s | %s\n' "$name" "$set" "$wall" \
    "$(awk -v b="$bytes" -v w="$wall" 'BEGIN{ if (w > 0) printf "%.0f", b/1e6/w; else print "-" }')" \
    "$(( rss / 1024 ))" "$(tail -n 3 /tmp/peers.out | tr -s ' \n' ' ' | cut -c1-260)"
}

echo "# corpus $(basename "$corpus"): $bytes bytes of logs; $(nproc) cores; $(date -u +%FT%TZ)"
cat "$log" >/dev/null # every tool reads it from the page cache
measure wc-l - wc -l "$log"
for set in "${sets[@]}"; do
  feed=$corpus/ind-$set.txt
  measure iocd-1 "$set" sh -c "'$IOCD_BIN' scan --threads 1 -i '$feed' '$log' 2>&1 >/dev/null | grep -E 'scanned'"
  measure iocd "$set" sh -c "'$IOCD_BIN' scan -i '$feed' '$log' 2>&1 >/dev/null | grep -E 'scanned'"
  measure hs-c "$set" "$hs_c" "$feed" "$log"
  measure hs-py "$set" python3 "$shared/bench/hs_scan.py" "$feed" "$log"
  measure rg "$set" sh -c "grep -v '^#' '$feed' > /tmp/peers.pat; rg -F -c -f /tmp/peers.pat '$log'"
  measure grep "$set" sh -c "grep -v '^#' '$feed' > /tmp/peers.pat; grep -F -c -f /tmp/peers.pat '$log'"
done
