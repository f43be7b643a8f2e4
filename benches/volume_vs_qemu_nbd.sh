#!/usr/bin/env bash
# fio's nbd engine against (a) qemu-nbd serving a local raw file and (b) a Stratus volume
# (3 replicas on a `stratus dev up` cluster, exported by `stratus volume export`), one
# after the other in each round, both filled with data first. Prints one line per test and
# round: IOPS or MB/s of each and their ratio (b)/(a).
#
#   cargo build --release --bins && benches/volume_vs_qemu_nbd.sh [ROUNDS] [SECONDS]
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-10}
B=$(cd "${STRATUS_BIN:-./target/release}" && pwd)
W=$(mktemp -d /tmp/volbench.XXXXXX)
D=$W/cluster
SIZE=256m
trap '"$B/stratus" dev down --dir "$D" >/dev/null 2>&1 || true; kill $QPID $XPID 2>/dev/null || true; rm -rf "$W"' EXIT
QPID=""; XPID=""

"$B/stratus" dev up --dir "$D" --worker-interval 30 >/dev/null
VOL=$("$B/stratus" --dir "$D" volume create --size 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$B/stratus" --dir "$D" volume export "$VOL" --socket "$W/vol.sock" > "$W/export.log" 2>&1 &
XPID=$!
truncate -s 1G "$W/disk.raw"
qemu-nbd --format=raw --persistent --shared=4 --socket="$W/ref.sock" --export-name=ref "$W/disk.raw" &
QPID=$!
for _ in $(seq 100); do [ -S "$W/vol.sock" ] && [ -S "$W/ref.sock" ] && break; sleep 0.1; done
REF="nbd+unix:///ref?socket=$W/ref.sock"
STR="nbd+unix:///$VOL?socket=$W/vol.sock"

# Fill the region every test touches, on both.
for u in "$REF" "$STR"; do
  fio --name=fill --ioengine=nbd --uri="$u" --rw=write --bs=1m --iodepth=8 --size=$SIZE \
    --output-format=terse >/dev/null
done

# name | fio arguments | what is reported (iops or bw)
TESTS=(
  "randread-4k-qd1|--rw=randread --bs=4k --iodepth=1|read_iops"
  "randread-4k-qd16|--rw=randread --bs=4k --iodepth=16|read_iops"
  "randwrite-4k-fsync-qd1|--rw=randwrite --bs=4k --iodepth=1 --fsync=1|write_iops"
  "seqread-1m-qd8|--rw=read --bs=1m --iodepth=8|read_bw"
  "seqwrite-1m-qd8|--rw=write --bs=1m --iodepth=8 --end_fsync=1|write_bw"
)

run() { # uri, args -> json
  # shellcheck disable=SC2086
  fio --name=t --ioengine=nbd --uri="$1" $2 --size=$SIZE --time_based --runtime="$SECS" \
    --output-format=json 2>/dev/null
}
value() { # what < json
  python3 -c '
import json, sys
t = sys.stdin.read(); j = json.loads(t[t.find("{"):])["jobs"][0]
what = sys.argv[1]; side = j["read" if what.startswith("read") else "write"]
print(round(side["iops"]) if what.endswith("iops") else round(side["bw_bytes"] / 1e6, 1))
' "$1"
}
p99() { # what < json: p99 completion latency, microseconds
  python3 -c '
import json, sys
t = sys.stdin.read(); j = json.loads(t[t.find("{"):])["jobs"][0]
side = j["read" if sys.argv[1].startswith("read") else "write"]
print(round(side["clat_ns"]["percentile"]["99.000000"] / 1000))
' "$1"
}

printf "%-24s %5s %12s %12s %7s %10s %10s\n" test round qemu-nbd stratus ratio "p99 q µs" "p99 s µs"
for round in $(seq "$ROUNDS"); do
  for t in "${TESTS[@]}"; do
    IFS='|' read -r name args what <<<"$t"
    a=$(run "$REF" "$args"); b=$(run "$STR" "$args")
    va=$(value "$what" <<<"$a"); vb=$(value "$what" <<<"$b")
    pa=$(p99 "$what" <<<"$a"); pb=$(p99 "$what" <<<"$b")
    ratio=$(python3 -c "print(f'{$vb / $va:.2f}' if $va else 'n/a')")
    printf "%-24s %5s %12s %12s %7s %10s %10s\n" "$name" "$round" "$va" "$vb" "$ratio" "$pa" "$pb"
  done
done
