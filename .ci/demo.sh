#!/usr/bin/env bash
# The README demo. As root: the `mesh` lab (3 podbgp nodes in a Calico full mesh from the file
# datastore topologies/mesh.yaml, an FRR top-of-rack router, a pod behind each node) in network
# namespaces: brings it up, checks sessions, kernel routes and pod-to-pod pings, prints every
# node's status table and installed routes, and tears it down. Installs frr (and ping) when
# missing. Without root: the loopback demo (`podbgp demo`), which needs no privileges.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "${HOME:-/root}/.cargo/bin" ] && export PATH="${HOME:-/root}/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
  echo "== not root: running the loopback demo (the namespace lab needs root)" >&2
  exec cargo run --release -- demo
fi
missing=()
{ [ -x /usr/lib/frr/bgpd ] && [ -x /usr/lib/frr/zebra ] && command -v vtysh >/dev/null; } || missing+=(frr)
command -v ping >/dev/null || missing+=(iputils-ping)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}" >&2
  # Keep package scripts from starting services in the root namespace.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" || { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  if [ "$own_policy" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
cargo build --release --bin podbgp
exec ./target/release/podbgp lab test containerlab/mesh.clab.yml --show
