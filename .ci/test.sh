#!/usr/bin/env bash
# podbgp test suite: installs what the tests need (only when missing), then runs every test.
#
#   bash .ci/test.sh            # as root on Debian 12 (the namespace tests need root + FRR)
#
# Environment: PODBGP_TEST_THREADS (default 4; namespace tests are I/O bound).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
[ -d "${HOME:-/root}/.cargo/bin" ] && export PATH="${HOME:-/root}/.cargo/bin:$PATH"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages ------------------------------------------------------------------
missing=()
{ [ -x /usr/lib/frr/bgpd ] && [ -x /usr/lib/frr/zebra ] && command -v vtysh >/dev/null; } || missing+=(frr)
command -v ip >/dev/null || missing+=(iproute2)
# Benchmark devices (tests/bench_devices.rs): BIRD 2 and GoBGP beside FRR's bgpd.
[ -x /usr/sbin/bird ] || missing+=(bird2)
[ -x /usr/bin/gobgpd ] || missing+=(gobgpd)
command -v python3 >/dev/null || missing+=(python3)
# etcd tests (tests/etcd_client.rs): a real etcd member, etcdctl, and openssl for test certificates.
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
[ -x /usr/bin/etcdctl ] || missing+=(etcd-client)
command -v openssl >/dev/null || missing+=(openssl)
# Forwarding tests (tests/fib_kernel.rs): pods ping each other through installed routes.
command -v ping >/dev/null || missing+=(iputils-ping)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  # Keep package scripts from starting services (frr would start zebra in the root namespace,
  # etcd-server a system etcd on 2379).
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    own_policy=1
  fi
  apt_install() { as_root apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  rc=0
  apt_install || { as_root apt-get update -q && apt_install; } || rc=$?
  [ "$own_policy" -eq 1 ] && as_root rm -f "$policy"
  [ "$rc" -eq 0 ] || { echo "apt-get install ${missing[*]} failed" >&2; exit "$rc"; }
fi

# --- cargo-nextest --------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked || echo "cargo-nextest install failed; falling back to cargo test" >&2
fi

# --- tests ----------------------------------------------------------------------------
# A one-shot build gains nothing from incremental state, which would add ~2 GB to target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "== disk before build: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free"
threads="${PODBGP_TEST_THREADS:-4}"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast \
    --config-file .ci/nextest.toml --test-threads "$threads" || status=1
else
  cargo test --workspace --all-targets --no-fail-fast -- --test-threads "$threads" || status=1
fi
# nextest does not run doctests.
cargo test --workspace --doc || status=1
echo "== disk after tests: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free, target/ $(du -sh target 2>/dev/null | cut -f1)"
exit "$status"
