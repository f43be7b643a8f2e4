#!/bin/bash
# 256 MiB: plain object vs SLO (16 MiB segments) vs DLO, upload and download with stratus.
set -e
B=${STRATUS_BIN:-./target/release}; D=/tmp/bc-large; W=/tmp/large-work
rm -rf $D $W; mkdir -p $W/out; $B/stratus dev up --dir $D --worker-interval 30 > /dev/null
head -c 268435456 /dev/urandom > $W/big.bin
t() { local s=$(date +%s.%N); "$@" > /dev/null; local e=$(date +%s.%N); python3 -c "print(round(256*1.048576/($e-$s)))"; }
B=$(cd "$B" && pwd); cd $W
for round in 1 2; do
  echo "round $round plain-up $(t $B/stratus --dir $D upload plain big.bin) MB/s"
  echo "round $round slo-up $(t $B/stratus --dir $D upload --segment-size 16M slo big.bin) MB/s"
  echo "round $round dlo-up $(t $B/stratus --dir $D upload --segment-size 16M --use-dlo dlo big.bin) MB/s"
  for c in plain slo dlo; do
    echo "round $round $c-down $(t $B/stratus --dir $D download $c big.bin -D out/$c) MB/s"
    cmp big.bin out/$c/big.bin
  done
  $B/stratus --dir $D delete slo big.bin > /dev/null; $B/stratus --dir $D delete dlo big.bin > /dev/null
done
$B/stratus dev down --dir $D > /dev/null; rm -rf $W
