#!/usr/bin/env python3
"""Booting servers from replicated volumes, against QEMU booting the same disk from a file.

Brings up `stratus dev up --compute` (release binaries), uploads the test guest image
(`scripts/build-guest-image.sh`) and a 1 GiB raw image, then:

1. Root volume from a 1 GiB image: `POST /volumes` with `imageRef` until `available`,
   the first time (the image is imported into its image volume) and the next times (a
   copy-on-write clone of it).
2. Per round, one after the other:
   (a) Stratus: from `POST /servers` (imageRef, so a root volume is cloned from the image)
       to `STRATUS-GUEST-READY` in the guest's console log, then the server is deleted;
   (b) QEMU alone: `qemu-system-x86_64` with the settings the agent gives libvirt (TCG,
       machine pc, 1 vCPU, 256 MiB, virtio disk with cache=none, no NIC) booting a copy of
       the same raw image from a local file, to the same marker.
3. Servers per minute: create (imageRef), wait ACTIVE, delete, wait gone, for 60 s.

    cargo build --release --bins
    python3 benches/server_boot.py [--rounds 3]

Prints one JSON row per measurement and a summary (medians) at the end.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("STRATUS_BIN", os.path.join(ROOT, "target", "release"))
READY = "STRATUS-GUEST-READY"


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def openrc(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("export "):
            k, _, v = line[7:].partition("=")
            env[k] = v.strip("'\"")
    return env


class Api:
    def __init__(self, env):
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": env["OS_USERNAME"], "domain": {"name": "Default"},
            "password": env["OS_PASSWORD"]}}},
            "scope": {"project": {"name": env["OS_PROJECT_NAME"], "domain": {"name": "Default"}}}}}
        r = self.raw("POST", env["OS_AUTH_URL"] + "/v3/auth/tokens", body)
        self.token = r.headers["X-Subject-Token"]
        cat = json.loads(r.read())["token"]["catalog"]
        url = lambda t: next(e["url"] for s in cat if s["type"] == t
                             for e in s["endpoints"] if e["interface"] == "public")
        self.nova, self.cinder, self.glance = url("compute"), url("volumev3"), url("image")

    def raw(self, method, url, body=None, data=None, ctype="application/json"):
        payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=payload, method=method)
        req.add_header("Content-Type", ctype)
        if getattr(self, "token", None):
            req.add_header("X-Auth-Token", self.token)
        return urllib.request.urlopen(req, timeout=600)

    def call(self, method, url, body=None):
        try:
            with self.raw(method, url, body) as r:
                text = r.read()
                return r.status, json.loads(text) if text.strip() else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def wait(what, pred, limit=300, step=0.05):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        v = pred()
        if v:
            return v
        time.sleep(step)
    sys.exit(f"timed out waiting for {what}")


def upload(api, name, path, fmt):
    st, img = api.call("POST", api.glance + "/v2/images",
                       {"name": name, "disk_format": fmt, "container_format": "bare"})
    assert st == 201, img
    with open(path, "rb") as f:
        api.raw("PUT", f"{api.glance}/v2/images/{img['id']}/file", data=f.read(),
                ctype="application/octet-stream").read()
    wait("image active", lambda: api.call("GET", f"{api.glance}/v2/images/{img['id']}")[1]["status"] == "active")
    return img["id"]


def volume_from_image(api, image):
    t0 = time.monotonic()
    st, v = api.call("POST", api.cinder + "/volumes",
                     {"volume": {"size": 1, "imageRef": image, "name": "bench"}})
    assert st == 202, v
    vid = v["volume"]["id"]
    wait("volume available",
         lambda: api.call("GET", f"{api.cinder}/volumes/{vid}")[1]["volume"]["status"] == "available")
    dt = time.monotonic() - t0
    api.call("DELETE", f"{api.cinder}/volumes/{vid}")
    return dt


def boot_stratus(api, image, consoles):
    t0 = time.monotonic()
    st, s = api.call("POST", api.nova + "/servers", {"server": {
        "name": "bench", "flavorRef": "1", "imageRef": image, "networks": []}})
    assert st == 202, s
    sid = s["server"]["id"]
    log = os.path.join(consoles, sid + ".log")

    def ready():
        try:
            return READY in open(log, errors="replace").read()
        except FileNotFoundError:
            return False
    wait("READY", ready, limit=300, step=0.02)
    dt = time.monotonic() - t0
    api.call("DELETE", f"{api.nova}/servers/{sid}")
    wait("server gone", lambda: api.call("GET", f"{api.nova}/servers/{sid}")[0] == 404, step=0.2)
    return dt


def boot_qemu(raw, work):
    disk = os.path.join(work, "qemu-disk.raw")
    log = os.path.join(work, "qemu-console.log")
    run("cp", "--sparse=always", raw, disk)
    if os.path.exists(log):
        os.unlink(log)
    t0 = time.monotonic()
    p = subprocess.Popen(["qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-smp", "1",
                          "-m", "256", "-nodefaults", "-no-user-config", "-display", "none",
                          "-monitor", "none", "-serial", f"file:{log}",
                          "-drive", f"file={disk},format=raw,if=virtio,cache=none"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready():
        try:
            return READY in open(log, errors="replace").read()
        except FileNotFoundError:
            return False
    wait("READY (qemu)", ready, limit=300, step=0.02)
    dt = time.monotonic() - t0
    p.kill()
    p.wait()
    return dt


def per_minute(api, image, seconds=60):
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        st, s = api.call("POST", api.nova + "/servers", {"server": {
            "name": f"churn{n}", "flavorRef": "1", "imageRef": image, "networks": []}})
        assert st == 202, s
        sid = s["server"]["id"]
        wait("ACTIVE", lambda: api.call("GET", f"{api.nova}/servers/{sid}")[1]["server"]["status"] == "ACTIVE", step=0.05)
        api.call("DELETE", f"{api.nova}/servers/{sid}")
        wait("gone", lambda: api.call("GET", f"{api.nova}/servers/{sid}")[0] == 404, step=0.05)
        n += 1
    return n * 60.0 / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bootbench.")
    cluster = os.path.join(work, "cluster")
    stratus = os.path.join(BIN, "stratus")
    try:
        img = os.path.join(ROOT, "target", "guest-image")
        run("bash", os.path.join(ROOT, "scripts", "build-guest-image.sh"), img)
        raw = os.path.join(img, "stratus-guest.raw")
        big = os.path.join(work, "one-gib.raw")
        run("cp", "--sparse=always", raw, big)
        os.truncate(big, 1 << 30)
        run(stratus, "dev", "up", "--dir", cluster, "--compute", "--worker-interval", "30")
        api = Api(openrc(os.path.join(cluster, "openrc")))
        image = upload(api, "guest", raw, "raw")
        image_1g = upload(api, "guest-1g", big, "raw")
        rows = {"root volume, first (import)": [], "root volume, clone": [],
                "stratus boot": [], "qemu boot": [], "ratio": []}
        first = volume_from_image(api, image_1g)
        rows["root volume, first (import)"].append(first)
        print(json.dumps({"what": "root volume from 1 GiB image, first", "s": round(first, 3)}), flush=True)
        for _ in range(3):
            t = volume_from_image(api, image_1g)
            rows["root volume, clone"].append(t)
            print(json.dumps({"what": "root volume from 1 GiB image, clone", "s": round(t, 3)}), flush=True)
        consoles = os.path.join(cluster, "compute-1", "console")
        boot_stratus(api, image, consoles)  # warm: the image volume is imported once
        for r in range(a.rounds):
            order = [("stratus", lambda: boot_stratus(api, image, consoles)),
                     ("qemu", lambda: boot_qemu(raw, work))]
            if r % 2:
                order.reverse()
            got = {k: f() for k, f in order}
            rows["stratus boot"].append(got["stratus"])
            rows["qemu boot"].append(got["qemu"])
            rows["ratio"].append(got["stratus"] / got["qemu"])
            print(json.dumps({"round": r + 1, "stratus_s": round(got["stratus"], 2),
                              "qemu_s": round(got["qemu"], 2),
                              "ratio": round(got["stratus"] / got["qemu"], 2)}), flush=True)
        rate = per_minute(api, image)
        print(json.dumps({"what": "servers created and deleted per minute (one agent)",
                          "per_min": round(rate, 1)}), flush=True)
        print("\nsummary (median, min-max)")
        for k, v in rows.items():
            print(f"  {k:28} {statistics.median(v):7.2f}  ({min(v):.2f}-{max(v):.2f})")
        print(f"  {'servers per minute':28} {rate:7.1f}")
    finally:
        subprocess.run([stratus, "dev", "down", "--dir", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
