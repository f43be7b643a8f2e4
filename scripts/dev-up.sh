#!/usr/bin/env bash
# Build Stratus (release) and start a local cloud on 127.0.0.1: 3 meta nodes, 4 storage
# nodes, the proxy (Swift, Keystone, Glance, Cinder, Nova) and, as root, libvirtd and a
# compute agent (`--compute`; QEMU runs guests under TCG where KVM does not work). The
# system packages (QEMU and libvirt included) are installed by scripts/deps.sh.
# Extra arguments go to `stratus dev up` (e.g. --dir /tmp/stratus); STRATUS_COMPUTE=0
# leaves compute out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked --bins
compute=()
if [ "${STRATUS_COMPUTE:-1}" != 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    compute=(--compute)
  else
    echo "not root: starting without compute (libvirtd and the agent need root)" >&2
  fi
fi
exec ./target/release/stratus dev up "${compute[@]}" "$@"
