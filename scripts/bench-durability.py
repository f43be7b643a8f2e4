#!/usr/bin/env python3
"""Durability benchmarks on a release-build dev cluster (see BENCHMARKS.md):

1. refill speed: a device's directory is wiped (disk replaced) and the replicators refill
   it from peers; timed from the node's restart to `stratus cluster health` at 100%;
2. auditor throughput at its default rate and unlimited (from `stratus worker list`);
3. foreground 4 KiB PUT/GET and 1 MiB GET with the workers quiet, then with the auditor and
   the replicator running back to back at their default rates; the ratio busy/quiet.

Usage: cargo build --release --bins && scripts/bench-durability.py [--big N] [--small N]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = os.path.join(ROOT, "target", "release", "stratus")


def run(*args, check=True):
    r = subprocess.run([S, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"stratus {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def health(d):
    return json.loads(run("cluster", "health", "--json", "--dir", d))


def healthy(h):
    return not h["unreachable"] and all(
        r["in_sync"] == r["slots"] and r["handoffs"] == 0 and r["missing"] == 0
        for r in h["rings"]
    )


def wait_healthy(d, limit=900):
    t = time.time()
    while time.time() - t < limit:
        if healthy(health(d)):
            return time.time() - t
        time.sleep(0.2)
    sys.exit("cluster never became healthy")


def device_items(d, node, dev):
    return sum(
        x["items"]
        for x in health(d)["devices"]
        if x["ring"] == "object" and x["node"] == node and x["device"] == dev
    )


def workers(d):
    return json.loads(run("worker", "list", "--json", "--dir", d))


def total(d, worker, counter):
    return sum(
        w[counter]
        for n in workers(d)
        for w in n.get("workers", [])
        if w["name"] == worker
    )


def wset(d, worker, setting, value):
    run("worker", "--dir", d, "set", "all", worker, setting, str(value))


def bench(d, op, *args):
    out = run("bench", op, *args, "--json", "--dir", d)
    return json.loads(out)["ops"][op]


def wipe_and_refill(d, n, dev):
    addr = open(os.path.join(d, f"storage-{n}", "addr")).read().strip()
    items = device_items(d, addr, dev)
    used = du(os.path.join(d, f"storage-{n}", dev))
    pid = int(open(os.path.join(d, f"storage-{n}", "pid")).read())
    os.kill(pid, signal.SIGKILL)
    while True:  # a killed process with I/O in flight takes a moment to be gone
        try:
            os.kill(pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break
    shutil.rmtree(os.path.join(d, f"storage-{n}", dev))
    run("dev", "up", "--dir", d, "--meta-nodes", "1", "--worker-interval", "1")
    secs = wait_healthy(d)
    assert device_items(d, addr, dev) == items, "refilled device lacks objects"
    return items, used, secs


def du(path):
    n = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                n += os.stat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return n


def rates(d, worker, secs=10):
    """Cluster-wide MB/s and objects/s of `worker` over `secs`."""
    b0, n0 = total(d, worker, "bytes"), total(d, worker, "scanned")
    t0 = time.time()
    time.sleep(secs)
    dt = time.time() - t0
    return {"mb_per_sec": (total(d, worker, "bytes") - b0) / dt / 1e6,
            "objects_per_sec": (total(d, worker, "scanned") - n0) / dt}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/stratus-bench-durability")
    ap.add_argument("--big", type=int, default=800, help="1 MiB objects")
    ap.add_argument("--small", type=int, default=20000, help="4 KiB objects")
    ap.add_argument("--secs", default="15s", help="each foreground run")
    a = ap.parse_args()
    d = a.dir
    run("dev", "down", "--dir", d, check=False)
    shutil.rmtree(d, ignore_errors=True)
    run("dev", "up", "--dir", d, "--meta-nodes", "1", "--worker-interval", "1")
    res = {}

    # 1a. Refill of big objects.
    bench(d, "put", "--size", "1MiB", "--count", str(a.big), "--keep", "--names", "sequential")
    wait_healthy(d)
    items, used, secs = wipe_and_refill(d, 1, "d1")
    res["refill_big"] = {"objects": items, "bytes": used, "secs": secs,
                         "objects_per_sec": items / secs, "mb_per_sec": used / secs / 1e6}
    print("refill, 1 MiB objects:", res["refill_big"], flush=True)

    # 1b. Refill of small objects (plus the big ones, which are already counted above).
    bench(d, "put", "--size", "4KiB", "--count", str(a.small), "--keep", "--names", "sequential",
          "--containers", "4")
    wait_healthy(d)
    items, used, secs = wipe_and_refill(d, 2, "d2")
    res["refill_mixed"] = {"objects": items, "bytes": used, "secs": secs,
                           "objects_per_sec": items / secs, "mb_per_sec": used / secs / 1e6}
    print("refill, 4 KiB + 1 MiB objects:", res["refill_mixed"], flush=True)

    # 2. Auditor throughput, back-to-back passes: default rates, then unlimited.
    wset(d, "auditor", "interval", 0)
    res["auditor_default"] = rates(d, "auditor")
    wset(d, "auditor", "bytes_per_sec", 0)
    wset(d, "auditor", "objects_per_sec", 0)
    res["auditor_unlimited"] = rates(d, "auditor")
    print("auditor, default / unlimited:", res["auditor_default"], res["auditor_unlimited"],
          flush=True)

    # 3. Foreground throughput, workers quiet then busy.
    def foreground():
        put = bench(d, "put", "--size", "4KiB", "--duration", a.secs)
        get = bench(d, "get", "--size", "4KiB", "--duration", a.secs, "--prefill", "2000")
        big = bench(d, "get", "--size", "1MiB", "--duration", a.secs, "--prefill", "200")
        return {"put_4k": put["ops_per_s"], "get_4k": get["ops_per_s"],
                "get_1m_mb_s": big["mb_per_s"]}

    for w in ["auditor", "replicator"]:
        wset(d, w, "interval", 3600)
    # A pass in progress crawls: quiet.
    wset(d, "auditor", "bytes_per_sec", 1)
    wset(d, "auditor", "objects_per_sec", 0.001)
    time.sleep(2)
    quiet = foreground()
    # Busy: the auditor back to back at its default rates, the replicator every second
    # (30 times its default).
    wset(d, "auditor", "bytes_per_sec", 32 * 1024 * 1024)
    wset(d, "auditor", "objects_per_sec", 500)
    wset(d, "auditor", "interval", 0)
    wset(d, "replicator", "interval", 1)
    busy = foreground()
    res["foreground"] = {"quiet": quiet, "busy": busy,
                         "ratio": {k: busy[k] / quiet[k] for k in quiet}}
    print("foreground:", json.dumps(res["foreground"], indent=1), flush=True)
    print(json.dumps(res, indent=1))
    run("dev", "down", "--dir", d, check=False)


if __name__ == "__main__":
    main()
