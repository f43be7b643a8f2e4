#!/usr/bin/env python3
"""Stratus meta against etcd on this machine: committed, synced writes per second.

Starts a 3-voter Stratus meta cluster (`stratus-meta` processes, nothing else) and a
3-member etcd cluster (Debian's `etcd-server`), both with their data under one directory on
disk, then runs the same loop against each: `stratus meta bench` and the `etcd_load`
example (workers putting 256-byte values under their own keys, each put acknowledged only
once a quorum has it durable). Levels run one at a time, interleaved A B within a level
and B A in the next round, so both see the same machine. Around every run it reads the
leader's metrics to report how many log entries each fsync made durable.

    cargo build --release --bins
    cargo build --release -p stratus-benches --example etcd_load
    python3 benches/meta_vs_etcd.py [--rounds 2] [--seconds 10] [--levels 1,16,64]

`STRATUS_META_BIN` names another `stratus-meta` (an older build, for a before/after run;
builds before 2026-11-30 need `STRATUS_META_WORKERS=default`, they lack the flag). The meta
nodes run with `--worker-threads 1`, as `stratus dev up` runs them (`STRATUS_META_WORKERS`
changes it) and without TLS, as etcd does here (`--insecure`; `STRATUS_META_INSECURE=0`
for builds from before mutual TLS); etcd runs with its defaults (`GOMAXPROCS` = the cores), or whatever
`GOMAXPROCS` the environment sets.
Prints one JSON row per run and a summary table (medians over rounds) at the end.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(url):
    """Prometheus text at `url` as {name{labels}: value}."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def wait_for(what, f, limit=60):
    end = time.time() + limit
    while time.time() < end:
        try:
            v = f()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


class Processes:
    """Three member processes, stopped together."""

    procs = []

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=30)


class Stratus(Processes):
    def __init__(self, base, meta_bin):
        self.procs, self.grpc, self.admin = [], [], []
        # As `stratus dev up` runs them: three nodes share this machine's cores.
        workers = os.environ.get("STRATUS_META_WORKERS", "1")
        extra = [] if workers == "default" else ["--worker-threads", workers]
        # Like against like: etcd runs without TLS here, so do the meta nodes (builds from
        # before mutual TLS lack the flag: STRATUS_META_INSECURE=0).
        if os.environ.get("STRATUS_META_INSECURE", "1") == "1":
            extra.append("--insecure")
        self.base = base
        for i in (1, 2, 3):
            d = os.path.join(base, f"meta{i}")
            os.makedirs(d)
            g, a = free_port(), free_port()
            self.grpc.append(f"127.0.0.1:{g}")
            self.admin.append(f"http://127.0.0.1:{a}/metrics")
            log = open(os.path.join(base, f"meta{i}.log"), "w")
            self.procs.append(subprocess.Popen(
                [meta_bin, "--id", str(i), "--data-dir", d, "--listen", f"127.0.0.1:{g}",
                 "--admin-listen", f"127.0.0.1:{a}", *extra], stdout=log, stderr=log))
        for url in self.admin:
            wait_for(f"{url}", lambda u=url: metrics(u))
        members = [f"{i}={ep}" for i, ep in zip((1, 2, 3), self.grpc)]
        self.cli(["init", *members])
        wait_for("a Stratus leader", self.leader_metrics)

    def cli(self, args, capture=False):
        # `--dir base`: no dev cluster's TLS identity there, so the CLI speaks plain gRPC.
        cmd = [os.path.join(REL, "stratus"), "meta", "--dir", self.base, "--meta", ",".join(self.grpc), *args]
        return subprocess.run(cmd, check=True, text=True,
                              stdout=subprocess.PIPE if capture else None).stdout

    def leader_metrics(self):
        for url in self.admin:
            m = metrics(url)
            if m.get("stratus_raft_is_leader") == 1.0:
                return url
        return None

    def counters(self):
        """(leader, client writes, log syncs) so far on the leader. Builds before group commit
        have no per-sync histogram; there one log entry was one write."""
        url = self.leader_metrics()
        m = metrics(url)
        if "stratus_raft_log_writes_per_sync_sum" in m:
            return url, m["stratus_raft_log_writes_per_sync_sum"], m[
                "stratus_raft_log_writes_per_sync_count"]
        return url, m.get("stratus_raft_last_log_index", 0), m.get(
            "stratus_fsync_duration_seconds_count", 0)

    def run(self, level, seconds):
        out = self.cli(["--json", "bench", "--concurrency", str(level), "--seconds", str(seconds),
                        "--value-size", "256"], capture=True)
        return json.loads(out)[0]


class Etcd(Processes):
    def __init__(self, base):
        peers = [free_port() for _ in range(3)]
        clients = [free_port() for _ in range(3)]
        cluster = ",".join(f"e{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
        self.urls = [f"http://127.0.0.1:{c}" for c in clients]
        self.procs = []
        for i in range(3):
            log = open(os.path.join(base, f"etcd{i}.log"), "w")
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"e{i}", "--data-dir", os.path.join(base, f"etcd{i}"),
                 "--listen-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--listen-client-urls", self.urls[i], "--advertise-client-urls", self.urls[i],
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "bench", "--log-level", "error", "--logger", "zap"],
                stdout=log, stderr=log))
        wait_for("an etcd leader", self.leader_url)

    def leader_url(self):
        for u in self.urls:
            m = metrics(u + "/metrics")
            if m.get("etcd_server_is_leader") == 1.0:
                return u
        return None

    def counters(self):
        u = self.leader_url()
        m = metrics(u + "/metrics")
        return u, m.get("etcd_server_proposals_committed_total", 0), m.get(
            "etcd_disk_wal_fsync_duration_seconds_count", 0)

    def run(self, level, seconds):
        out = subprocess.run([os.path.join(REL, "examples", "etcd_load"), ",".join(self.urls),
                              str(level), str(seconds), "256"],
                             check=True, text=True, stdout=subprocess.PIPE).stdout
        return json.loads(out)[0]


def measured(system, level, seconds):
    leader, w0, f0 = system.counters()
    row = system.run(level, seconds)
    leader2, w1, f1 = system.counters()
    row["leader_writes_per_fsync"] = (
        round((w1 - w0) / (f1 - f0), 2) if leader == leader2 and f1 > f0 else None)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--levels", default="1,16,64")
    # 15 s at every level writes ~150 MB of WAL on each Stratus member: past two rolls of
    # its 64 MiB bound, so the rounds run on reused WAL files, as a cluster that has been
    # up for a while does (a fresh member's first files are new ones).
    ap.add_argument("--warmup", type=int, default=15,
                    help="seconds each system runs at each level before the rounds, not counted")
    ap.add_argument("--settle", type=float, default=5,
                    help="seconds to wait after each run (after a sync) before the next")
    ap.add_argument("--dir", default=None, help="data directory (default: a new one in /var/tmp)")
    a = ap.parse_args()
    if not shutil.which("etcd"):
        sys.exit("etcd is not installed: apt-get install etcd-server")
    meta_bin = os.environ.get("STRATUS_META_BIN", os.path.join(REL, "stratus-meta"))
    base = a.dir or tempfile.mkdtemp(prefix="meta-vs-etcd-", dir="/var/tmp")
    levels = [int(x) for x in a.levels.split(",")]
    systems = {}
    try:
        for name in ("stratus", "etcd"):
            os.makedirs(os.path.join(base, name))
        systems["stratus"] = Stratus(os.path.join(base, "stratus"), meta_bin)
        systems["etcd"] = Etcd(os.path.join(base, "etcd"))
        # Both clusters were just started (etcd preallocates its WAL files, Stratus's members
        # open their column families): one unmeasured run of each at every level first, so
        # round 1 does not also measure the other system's start-up.
        if a.warmup > 0:
            for level in levels:
                for name in ("stratus", "etcd"):
                    systems[name].run(level, a.warmup)
        rows = []
        for rnd in range(a.rounds):
            order = ["stratus", "etcd"] if rnd % 2 == 0 else ["etcd", "stratus"]
            for level in levels:
                for name in order:
                    # The previous run ends with its cleanup (a delete of every bench
                    # key) and whatever background writes its system then does; measured
                    # beside them, the next run would time both systems at once.
                    os.sync()
                    time.sleep(a.settle)
                    row = measured(systems[name], level, a.seconds)
                    row.update(system=name, round=rnd + 1)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        print()
        print("| in flight | etcd writes/s | stratus writes/s | ratio | etcd p99 ms | "
              "stratus p99 ms | etcd writes/fsync | stratus writes/fsync |")
        print("|---|---|---|---|---|---|---|---|")
        for level in levels:
            def med(name, key):
                vals = [r[key] for r in rows if r["system"] == name and r["concurrency"] == level
                        and r[key] is not None]
                return statistics.median(vals) if vals else float("nan")
            e, s = med("etcd", "writes_per_sec"), med("stratus", "writes_per_sec")
            print(f"| {level} | {e:,.0f} | {s:,.0f} | {s / e:.2f}x | "
                  f"{med('etcd', 'p99_us') / 1000:.1f} | {med('stratus', 'p99_us') / 1000:.1f} | "
                  f"{med('etcd', 'leader_writes_per_fsync'):.1f} | "
                  f"{med('stratus', 'leader_writes_per_fsync'):.1f} |")
        # What each member copies whole every snapshot interval.
        snaps = []
        for root, _, files in os.walk(os.path.join(base, "stratus")):
            snaps += [os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(".snap")]
        if snaps:
            print(f"\nStratus snapshot files at the end: {len(snaps)}, largest "
                  f"{max(snaps) / 2**20:.1f} MiB")
    finally:
        for s in systems.values():
            s.stop()
        if not a.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
