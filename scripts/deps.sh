#!/usr/bin/env bash
# Install the system packages Stratus needs to build, when they are missing.
# RocksDB's Rust bindings need libclang (bindgen) and a C++ toolchain; protoc is vendored.
# The integration tests drive the cluster with the real `swift` client (python3-swiftclient),
# fetch temp URLs with curl, build tar, tar.gz and tar.bz2 archives (tar, gzip, bzip2), and
# parse every service's /metrics with the Prometheus text parser of prometheus_client.
# The volume tests drive exported volumes with fio (its nbd engine) and libnbd's nbdinfo.
# The identity tests drive the real `openstack` client (python-openstackclient, pinned below),
# installed from wheels into <repo>/.venv with Debian's python3 (python3-venv).
set -euo pipefail

need=()
for pkg in libclang-dev build-essential pkg-config python3-swiftclient python3-prometheus-client python3-venv curl tar gzip bzip2 fio libnbd-bin; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing system packages: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# qemu-img inspects and converts disk images (the image tests make qcow2 files with it).
# Debian 12's own qemu-utils (7.2) is older than the QEMU these guests are tested with, so
# it comes from bookworm-backports, pinned to that one package; the mirror is the one this
# machine's apt sources already name (read at install time, never written into the repo).
if ! command -v qemu-img >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  mirror="$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | sed 's/^URIs: *//')"
  [ -n "$mirror" ] || mirror="$(grep -hoE '^deb +[^ ]+/debian/? +bookworm' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')"
  if [ -z "$mirror" ]; then
    echo "qemu-img is missing and no Debian mirror is named in the apt sources" >&2
    exit 1
  fi
  echo "installing qemu-utils from bookworm-backports ($mirror)" >&2
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" \
    | $SUDO tee /etc/apt/sources.list.d/stratus-backports.sources >/dev/null
  printf 'Package: qemu-utils qemu-block-extra\nPin: release n=bookworm-backports\nPin-Priority: 600\n' \
    | $SUDO tee /etc/apt/preferences.d/stratus-qemu >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports qemu-utils >/dev/null
fi

# The real `openstack` client, pinned: Debian's python3-openstackclient (6.0) is far older
# and takes other code paths than the client people use today.
OSC_VERSION=10.5.0
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.venv"
if [ "$("$venv/bin/openstack" --version 2>/dev/null || true)" != "openstack $OSC_VERSION" ]; then
  echo "installing python-openstackclient $OSC_VERSION into $venv" >&2
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary :all: \
    "python-openstackclient==$OSC_VERSION"
  got="$("$venv/bin/openstack" --version 2>/dev/null || true)"
  if [ "$got" != "openstack $OSC_VERSION" ]; then
    echo "$venv/bin/openstack --version printed '$got', expected 'openstack $OSC_VERSION'" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
