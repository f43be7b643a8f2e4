#!/usr/bin/env python3
"""What mutual TLS inside the cluster costs: the same `stratus bench` and `stratus meta
bench` runs against a `dev up` cluster without TLS (`--insecure`) and with it (the
default), back to back.

Each round starts a fresh cluster of each kind in turn (A B, then B A in the next round,
so both see the same machine): 3 meta nodes, 4 storage nodes of 2 devices, one proxy on
plain HTTP (the client side is the same for both: only what happens inside the cluster
differs). On each it runs, at concurrency 16: 4 KiB PUT and GET, 1 MiB PUT and GET,
64 MiB PUT and GET; then `stratus meta bench` at concurrency 64. It prints one JSON row per
run and a table of medians over rounds with the ratio TLS / plain.

    cargo build --release --bins
    python3 benches/tls_cost.py [--rounds 2] [--seconds 15] [--dir /var/tmp/tls-cost]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATUS = os.path.join(ROOT, "target", "release", "stratus")

# (name, bench arguments); a GET run reads what it uploads first (not measured).
OBJECT_RUNS = [
    ("put 4KiB", ["put", "--size", "4KiB"]),
    ("get 4KiB", ["get", "--size", "4KiB", "--prefill", "2000"]),
    ("put 1MiB", ["put", "--size", "1MiB"]),
    ("get 1MiB", ["get", "--size", "1MiB", "--prefill", "200"]),
    ("put 64MiB", ["put", "--size", "64MiB"]),
    ("get 64MiB", ["get", "--size", "64MiB", "--prefill", "32"]),
]


def run(args, env=None, timeout=900):
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def cluster(mode, base):
    d = os.path.join(base, mode)
    shutil.rmtree(d, ignore_errors=True)
    up = [STRATUS, "dev", "up", "--dir", d]
    if mode == "plain":
        up.append("--insecure")
    run(up)
    return d


def down(d):
    subprocess.run([STRATUS, "dev", "down", "--dir", d], capture_output=True, timeout=120)
    shutil.rmtree(d, ignore_errors=True)


def settle():
    os.sync()
    time.sleep(3)


def one_mode(mode, base, seconds, rnd):
    d = cluster(mode, base)
    env = dict(os.environ, STRATUS_DEV_DIR=d)
    rows = []
    try:
        for name, args in OBJECT_RUNS:
            settle()
            secs = seconds * 2 if "64MiB" in name else seconds
            out = run(
                [STRATUS, "bench", *args, "--concurrency", "16", "--duration", f"{secs}s", "--json"],
                env=env,
            )
            rep = json.loads(out)
            op = rep["ops"][args[0]]
            row = {
                "round": rnd, "mode": mode, "run": name,
                "ops_per_s": op["ops_per_s"], "mb_per_s": op["mb_per_s"],
                "p50_ms": op["latency_ms"]["p50"], "p99_ms": op["latency_ms"]["p99"],
                "errors": op["error_count"],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
        settle()
        out = run(
            [STRATUS, "meta", "--dir", d, "--json", "bench", "--concurrency", "64", "--seconds", "10", "--value-size", "256"],
            env=env,
        )
        level = json.loads(out)[0]
        row = {
            "round": rnd, "mode": mode, "run": "meta bench c64",
            "ops_per_s": level["writes_per_sec"], "mb_per_s": None,
            "p50_ms": level["p50_us"] / 1000, "p99_ms": level["p99_us"] / 1000,
            "errors": level["errors"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    finally:
        down(d)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--dir", default="/var/tmp/tls-cost")
    a = ap.parse_args()
    if not os.path.exists(STRATUS):
        sys.exit("build first: cargo build --release --bins")
    os.makedirs(a.dir, exist_ok=True)
    rows = []
    for rnd in range(1, a.rounds + 1):
        order = ["plain", "tls"] if rnd % 2 else ["tls", "plain"]
        for mode in order:
            rows += one_mode(mode, a.dir, a.seconds, rnd)
    names = [n for n, _ in OBJECT_RUNS] + ["meta bench c64"]
    print()
    print("| run | plain ops/s | TLS ops/s | TLS / plain | plain p99 ms | TLS p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        med = {}
        for mode in ("plain", "tls"):
            rs = [r for r in rows if r["run"] == n and r["mode"] == mode]
            med[mode] = (
                statistics.median(r["ops_per_s"] for r in rs),
                statistics.median(r["p99_ms"] for r in rs if r["p99_ms"] is not None)
                if any(r["p99_ms"] is not None for r in rs) else None,
                sum(r["errors"] for r in rs),
            )
        (po, pp, pe), (to, tp, te) = med["plain"], med["tls"]
        fmt = lambda v: "-" if v is None else f"{v:,.1f}"
        print(f"| {n} | {po:,.1f} | {to:,.1f} | {to / po:.2f}x | {fmt(pp)} | {fmt(tp)} | {pe + te} |")


if __name__ == "__main__":
    main()
