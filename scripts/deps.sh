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

# QEMU, libvirt and the guest-image tools, for the compute service and its tests.
# qemu-img inspects and converts disk images (the image tests make qcow2 files with it).
# qemu-system-x86 runs the guests (TCG when KVM does not work), under libvirt (libvirtd +
# virtlogd; libvirt-daemon-system creates the libvirt-qemu user and /etc/libvirt/qemu.conf);
# libvirt-dev and pkg-config let the agent link libvirt. scripts/build-guest-image.sh needs
# e2fsprogs, grub-common and grub-pc-bin (grub-pc-bin writes no MBR; that is grub-pc's job).
# Debian 12's own QEMU (7.2) is older than the QEMU these guests are tested with, and its
# qemu-system-x86 would remove qemu-utils 10, so QEMU comes from bookworm-backports: exactly the
# packages below are pinned there (seabios too: QEMU 10 needs >> 1.16.3-1; ipxe-qemu and the
# libraries stay Debian 12's). libvirt comes from bookworm-backports as well (11.3, not 9.0):
# 9.0's schema has no <reconnect delay='N'/> on an NBD disk source (added later; tested on 11.3).
# With it QEMU waits for a restarted NBD server instead of failing the guest's I/O. The libvirt
# packages are pinned together (their versions must match exactly); everything else (systemd,
# libxml2, ...) stays Debian 12's. libvirt 9.0 (installed before this pin) is upgraded.
# The mirror is the one this machine's apt sources already name (read at install time, never
# written into the repo). Nothing here starts a daemon: run `virtlogd -d; libvirtd -d`.
QEMU_PKGS=(qemu-utils qemu-system-x86)
QEMU_PINNED="qemu-utils qemu-block-extra qemu-system-x86 qemu-system-common qemu-system-data seabios"
VIRT_PKGS=(libvirt-daemon-system libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config)
IMAGE_PKGS=(e2fsprogs grub-common grub-pc-bin)
need=()
for pkg in "${QEMU_PKGS[@]}" "${VIRT_PKGS[@]}" "${IMAGE_PKGS[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
lv="$(dpkg-query -W -f '${Version}' libvirt-daemon 2>/dev/null || true)"
if [ -n "$lv" ] && dpkg --compare-versions "$lv" lt 11; then need+=(libvirt-daemon); fi
if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  mirror="$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | sed 's/^URIs: *//')"
  [ -n "$mirror" ] || mirror="$(grep -hoE '^deb +[^ ]+/debian/? +bookworm' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')"
  if [ -z "$mirror" ]; then
    echo "need ${need[*]} from bookworm-backports, but no Debian mirror is named in the apt sources" >&2
    exit 1
  fi
  echo "installing ${need[*]} (QEMU and libvirt from bookworm-backports, $mirror)" >&2
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" \
    | $SUDO tee /etc/apt/sources.list.d/stratus-backports.sources >/dev/null
  printf 'Package: %s\nPin: release n=bookworm-backports\nPin-Priority: 600\n\nPackage: /^libvirt/\nPin: release n=bookworm-backports\nPin-Priority: 600\n' "$QEMU_PINNED" \
    | $SUDO tee /etc/apt/preferences.d/stratus-qemu >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # The whole list, so that apt upgrades anything pinned that is already installed from Debian 12.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${QEMU_PKGS[@]}" "${VIRT_PKGS[@]}" "${IMAGE_PKGS[@]}" >/dev/null
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
