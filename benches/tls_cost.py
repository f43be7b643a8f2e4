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
        [--only 'get 4KiB,put 1MiB,meta']

With `--baseline DIR` (a folder holding another build's `stratus*` binaries) it compares
that build ("before") with this one ("after") instead, both with TLS: what a change to
the object path costs.
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


WITH_META = True

# mode -> the `stratus` binary it runs (the other services are its siblings).
BINS = {"plain": STRATUS, "tls": STRATUS, "after": STRATUS}


def run(args, env=None, timeout=900):
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def cluster(mode, base):
    d = os.path.join(base, mode)
    shutil.rmtree(d, ignore_errors=True)
    up = [BINS[mode], "dev", "up", "--dir", d]
    if mode == "plain":
        up.append("--insecure")
    run(up)
    return d


def down(d, mode):
    subprocess.run([BINS[mode], "dev", "down", "--dir", d], capture_output=True, timeout=120)
    shutil.rmtree(d, ignore_errors=True)


def cpu_seconds(d):
    """CPU seconds (user + system) used so far by the cluster's processes, by kind."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"proxy": 0.0, "storage": 0.0, "meta": 0.0}
    for name in os.listdir(d):
        kind = name.split("-")[0]
        try:
            pid = int(open(os.path.join(d, name, "pid")).read())
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        if kind in out:
            out[kind] += (int(fields[11]) + int(fields[12])) / tick
    return out


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
            cpu0 = cpu_seconds(d)
            out = run(
                [BINS[mode], "bench", *args, "--concurrency", "16", "--duration", f"{secs}s", "--json"],
                env=env,
            )
            cpu1 = cpu_seconds(d)
            rep = json.loads(out)
            op = rep["ops"][args[0]]
            # CPU per operation by process kind (a GET run's prefill counts too: small).
            n = max(op["count"], 1)
            row = {
                "round": rnd, "mode": mode, "run": name,
                "ops_per_s": op["ops_per_s"], "mb_per_s": op["mb_per_s"],
                "p50_ms": op["latency_ms"]["p50"], "p99_ms": op["latency_ms"]["p99"],
                "errors": op["error_count"],
                "cpu_ms_per_op": {k: round((cpu1[k] - cpu0[k]) * 1000 / n, 3) for k in cpu1},
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
        if not WITH_META:
            return rows
        settle()
        out = run(
            [BINS[mode], "meta", "--dir", d, "--json", "bench", "--concurrency", "64", "--seconds", "10", "--value-size", "256"],
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
        down(d, mode)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--dir", default="/var/tmp/tls-cost")
    ap.add_argument("--only", help="comma-separated runs, e.g. 'get 4KiB,put 1MiB,meta'")
    ap.add_argument("--baseline", help="folder of another build's binaries: compare it with this one")
    a = ap.parse_args()
    modes = ("plain", "tls")
    if a.baseline:
        BINS["before"] = os.path.join(os.path.abspath(a.baseline), "stratus")
        modes = ("before", "after")
    if not os.path.exists(STRATUS):
        sys.exit("build first: cargo build --release --bins")
    os.makedirs(a.dir, exist_ok=True)
    if a.only:
        keep = [w.strip() for w in a.only.split(",")]
        OBJECT_RUNS[:] = [(n, r) for n, r in OBJECT_RUNS if n in keep]
        global WITH_META
        WITH_META = "meta" in keep
    rows = []
    for rnd in range(1, a.rounds + 1):
        order = list(modes) if rnd % 2 else list(reversed(modes))
        for mode in order:
            rows += one_mode(mode, a.dir, a.seconds, rnd)
    names = [n for n, _ in OBJECT_RUNS] + (["meta bench c64"] if WITH_META else [])
    print()
    a_, b_ = modes
    print(f"| run | {a_} ops/s | {b_} ops/s | {b_} / {a_} | {a_} p99 ms | {b_} p99 ms | errors | CPU ms/op {a_} → {b_} (proxy, storage) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        med = {}
        for mode in modes:
            rs = [r for r in rows if r["run"] == n and r["mode"] == mode]
            med[mode] = (
                statistics.median(r["ops_per_s"] for r in rs),
                statistics.median(r["p99_ms"] for r in rs if r["p99_ms"] is not None)
                if any(r["p99_ms"] is not None for r in rs) else None,
                sum(r["errors"] for r in rs),
            )
        (po, pp, pe), (to, tp, te) = med[a_], med[b_]
        fmt = lambda v: "-" if v is None else f"{v:,.1f}"
        cpu = {}
        for mode in modes:
            rs = [r for r in rows if r["run"] == n and r["mode"] == mode and "cpu_ms_per_op" in r]
            cpu[mode] = {k: statistics.median(r["cpu_ms_per_op"][k] for r in rs) for k in ("proxy", "storage")} if rs else None
        cpu_txt = "-" if not cpu[a_] else ", ".join(
            f"{k} {cpu[a_][k]:.2f} → {cpu[b_][k]:.2f}" for k in ("proxy", "storage"))
        print(f"| {n} | {po:,.1f} | {to:,.1f} | {to / po:.2f}x | {fmt(pp)} | {fmt(tp)} | {pe + te} | {cpu_txt} |")


if __name__ == "__main__":
    main()
