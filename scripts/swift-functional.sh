#!/usr/bin/env bash
# Runs OpenStack Swift's own functional tests (release 2.30.1, `test/functional` of its
# source distribution) against a Stratus cluster, one module at a time, and prints one line
# per module and a closing `N passed, N failed, N skipped`.
#
#   scripts/swift-functional.sh [--floors FILE] [--keep] [MODULE...]
#
# MODULE is a file of test/functional without `.py` (default: every module below). With
# --floors, a module that passes fewer tests than its floor in FILE (lines `MODULE N`,
# comments after `#`) fails the run. The cluster is a fresh `stratus dev up` in a temp dir
# (stopped at the end unless --keep), with the users the suite expects: test:tester and
# test:tester2 (owners of AUTH_test), test:tester3 (a member: ACLs only), test2:tester2,
# and test5:tester5 (in the `service` group: its token is a service token). The storage
# domain is example.net.
# The binaries are those of target/debug (STRATUS_BIN names another `stratus`).
#
# What it installs when missing: Debian's python3-swift (the suite imports swift.common;
# 2.30.1 as well), a venv <repo>/.venv-swift (Debian's python3, with its site packages)
# holding pytest and mock, pinned; the source release from PyPI, pinned by its SHA-256.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

SWIFT_VERSION=2.30.1
SWIFT_SHA256=5256e175ed7ddf76990ca189aebe7789c9f154b388763f6d86b25979b6782d5d
PYTEST_VERSION=9.2.0
MOCK_VERSION=5.2.0
ALL_MODULES=(tests test_account test_container test_object test_access_control test_dlo
  test_slo test_tempurl test_versioned_writes test_object_versioning test_symlink
  test_staticweb test_domain_remap)

floors=""
keep=0
modules=()
while (($#)); do
  case "$1" in
    --floors) floors="$(realpath "$2")"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) modules+=("$1"); shift ;;
  esac
done
((${#modules[@]})) || modules=("${ALL_MODULES[@]}")

# 1. What the suite needs.
if ! dpkg -s python3-swift >/dev/null 2>&1; then
  echo "installing python3-swift" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-swift >/dev/null
fi
venv="$repo/.venv-swift"
if ! "$venv/bin/python" -c "import pytest, mock, swift.common.utils" 2>/dev/null; then
  echo "installing pytest $PYTEST_VERSION and mock $MOCK_VERSION into $venv" >&2
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary :all: \
    "pytest==$PYTEST_VERSION" "mock==$MOCK_VERSION"
fi

# 2. The suite itself, from the source release.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/stratus/swift-$SWIFT_VERSION"
if [ ! -f "$cache/test/functional/tests.py" ]; then
  mkdir -p "$cache"
  tarball="$cache/swift-$SWIFT_VERSION.tar.gz"
  if ! echo "$SWIFT_SHA256  $tarball" | sha256sum -c --quiet 2>/dev/null; then
    echo "fetching swift $SWIFT_VERSION's source release" >&2
    "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
      --no-binary :all: -d "$cache" "swift==$SWIFT_VERSION"
  fi
  echo "$SWIFT_SHA256  $tarball" | sha256sum -c --quiet
  # Only the tests: `swift` itself is Debian's python3-swift, the same release.
  tar -xzf "$tarball" -C "$cache" --strip-components=1 "swift-$SWIFT_VERSION/test"
fi

# 3. A cluster with the suite's users.
stratus="${STRATUS_BIN:-$repo/target/debug/stratus}"
work="$(mktemp -d /var/tmp/stratus-swift-functional.XXXXXX)"
cleanup() {
  if ((keep)); then
    echo "cluster kept in $work/cluster (stop it with: $stratus dev down --dir $work/cluster)" >&2
  else
    "$stratus" dev down --dir "$work/cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT
"$stratus" dev up --dir "$work/cluster" --storage-domain example.net --policy silver >"$work/dev-up.log" 2>&1 || {
  cat "$work/dev-up.log" >&2
  exit 1
}
auth="$(cat "$work/cluster/auth-url")"
user() { "$stratus" user --dir "$work/cluster" add "$@" >/dev/null; }
user test:tester2 testing2
user --member test:tester3 testing3
user test2:tester2 testing2
user --member --group service test5:tester5 testing5
cat >"$work/test.conf" <<EOF
[func_test]
auth_uri = $auth
account = test
username = tester
password = testing
account2 = test2
username2 = tester2
password2 = testing2
username3 = tester3
password3 = testing3
account5 = test5
username5 = tester5
password5 = testing5
service_prefix = SERVICE
collate = C
insecure = no
storage_domain = example.net
EOF

# 4. Each module, and its floor.
declare -A floor=()
if [ -n "$floors" ]; then
  while read -r mod n _; do
    [[ -z "$mod" || "$mod" == \#* ]] && continue
    floor[$mod]="$n"
  done <"$floors"
fi
total_p=0 total_f=0 total_s=0 below=()
printf '%-24s %7s %7s %7s %7s\n' module passed failed skipped floor
for m in "${modules[@]}"; do
  log="$work/$m.log"
  (cd "$cache" && SWIFT_TEST_CONFIG_FILE="$work/test.conf" timeout 900 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -rfEs "test/functional/$m.py") >"$log" 2>&1 || true
  last="$(grep -E '(passed|failed|skipped|error|no tests ran)' "$log" | tail -n1)"
  count() { grep -oE "[0-9]+ $1" <<<"$last" | grep -oE '^[0-9]+' || echo 0; }
  p="$(count passed)" f="$(( $(count failed) + $(count error) ))" s="$(count skipped)"
  want="${floor[$m]:--}"
  printf '%-24s %7s %7s %7s %7s\n' "$m" "$p" "$f" "$s" "$want"
  total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
  if [ "$want" != "-" ] && ((p < want)); then
    below+=("$m ($p passed, floor $want)")
    grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' >&2 || true
  fi
done
echo "$total_p passed, $total_f failed, $total_s skipped"
if ((${#below[@]})); then
  echo "below their floors: ${below[*]}" >&2
  exit 1
fi
