#!/usr/bin/env bash
# Captures the BGP messages FRR bgpd sends, for tests/wire_vectors.rs.
#
# Topology (two network namespaces joined by one veth pair; nothing in the root namespace):
#
#   ns podbgp-wcap-frr                         ns podbgp-wcap-lst
#   eth0 198.18.0.1/24, 2001:2::1/64  <---->  eth0 198.18.0.2-5/24, 2001:2::2/64
#   zebra + bgpd (AS 4200000001)               capture_listener.py on :179
#
# FRR connects to three listener addresses, each advertising a different capability set
# (see capture_listener.py): .2 "new" (4-octet AS, IPv4+IPv6), .3 "old" (2-octet AS),
# .4 "addpath" (ADD-PATH receive for IPv4), .5 "ibgp" (FRR's own AS). The script then withdraws a prefix of each family,
# asks for a route refresh, and shuts the neighbours down, so FRR also sends withdrawals, a
# ROUTE-REFRESH and NOTIFICATIONs. Addresses: 198.18.0.0/15 and 2001:2::/48 (RFC 2544 / RFC 5180
# benchmarking ranges). Every process started here is killed by PID; both namespaces are deleted.
#
# Usage (root): tests/wire/capture_frr.sh OUTDIR      -> OUTDIR/{new,old,addpath,ibgp}.msgs
set -euo pipefail

OUT=$(realpath "${1:?usage: capture_frr.sh OUTDIR}")
HERE=$(dirname "$(realpath "$0")")
NSF=podbgp-wcap-frr
NSL=podbgp-wcap-lst
DIR=$(mktemp -d /tmp/podbgp-wcap.XXXXXX)
LPID=""

cleanup() {
    set +e
    local pids="" p deadline=$((SECONDS + 10))
    for p in "$DIR/bgpd.pid" "$DIR/zebra.pid"; do
        [ -s "$p" ] && pids="$pids $(cat "$p")"
    done
    [ -n "$LPID" ] && pids="$pids $LPID"
    for p in $pids; do kill "$p" 2>/dev/null; done
    # Wait (bounded) for our processes to exit before their namespaces go away.
    for p in $pids; do
        while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    done
    ip netns del "$NSF" 2>/dev/null
    ip netns del "$NSL" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT

# Poll (no fixed sleeps) until grep finds PATTERN in FILE, or fail after 90 s.
wait_for() {
    local file=$1 pattern=$2 deadline=$((SECONDS + 90))
    until [ -f "$file" ] && grep -Eq "$pattern" "$file"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "timeout waiting for /$pattern/ in $file" >&2
            tail -n 30 "$DIR/bgpd.log" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

mkdir -p "$OUT"
rm -f "$OUT"/new.msgs "$OUT"/old.msgs "$OUT"/addpath.msgs "$OUT"/ibgp.msgs

ip netns add "$NSF"
ip netns add "$NSL"
ip -n "$NSF" link add eth0 type veth peer name eth0 netns "$NSL"
for ns in "$NSF" "$NSL"; do
    # No DAD, so the link-local address exists before bgpd computes its IPv6 next hop.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
done
ip -n "$NSF" addr add 198.18.0.1/24 dev eth0
ip -n "$NSF" addr add 2001:2::1/64 dev eth0 nodad
for a in 2 3 4 5; do ip -n "$NSL" addr add 198.18.0.$a/24 dev eth0; done
ip -n "$NSL" addr add 2001:2::2/64 dev eth0 nodad

ip netns exec "$NSL" python3 "$HERE/capture_listener.py" "$OUT" \
    198.18.0.2=new 198.18.0.3=old 198.18.0.4=addpath 198.18.0.5=ibgp &
LPID=$!

cat > "$DIR/zebra.conf" <<'CONF'
hostname capfrr
CONF
cat > "$DIR/bgpd.conf" <<'CONF'
hostname capfrr
route-map SETATTRS permit 10
 set community 65001:100 65001:200
 set large-community 4200000001:1:2
 set extcommunity rt 65001:300
 set metric 50
exit
router bgp 4200000001
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 198.18.0.2 remote-as 65002
 neighbor 198.18.0.3 remote-as 65003
 neighbor 198.18.0.4 remote-as 65004
 neighbor 198.18.0.5 remote-as internal
 address-family ipv4 unicast
  network 198.18.100.0/24 route-map SETATTRS
  network 198.18.101.0/24 route-map SETATTRS
  aggregate-address 198.18.96.0/19
  neighbor 198.18.0.4 addpath-tx-all-paths
 exit-address-family
 address-family ipv6 unicast
  network 2001:2:0:100::/64
  network 2001:2:0:101::/64
  neighbor 198.18.0.2 activate
 exit-address-family
exit
CONF
chown -R frr:frr "$DIR"

ip netns exec "$NSF" /usr/lib/frr/zebra -d -f "$DIR/zebra.conf" -i "$DIR/zebra.pid" \
    --vty_socket "$DIR" -z "$DIR/zserv.api" -A 127.0.0.1 --log "file:$DIR/zebra.log"
wait_for "$DIR/zebra.pid" '[0-9]'
ip netns exec "$NSF" /usr/lib/frr/bgpd -d -z "$DIR/zserv.api" -f "$DIR/bgpd.conf" \
    -i "$DIR/bgpd.pid" --vty_socket "$DIR" -A 127.0.0.1 --log "file:$DIR/bgpd.log"

vty() { vtysh --vty_socket "$DIR" -d bgpd "$@" >/dev/null; }

EOR4='00170200000000$'
EOR6='0f(00)?03000201$'
wait_for "$OUT/new.msgs" "$EOR4"
wait_for "$OUT/new.msgs" "$EOR6"
wait_for "$OUT/old.msgs" "$EOR4"
wait_for "$OUT/addpath.msgs" "$EOR4"
wait_for "$OUT/ibgp.msgs" "$EOR4"

# ROUTE-REFRESH towards the "new" listener.
vty -c 'clear bgp ipv4 unicast 198.18.0.2 soft in'
wait_for "$OUT/new.msgs" '^5 '

# Withdrawals of one IPv4 and one IPv6 prefix.
vty -c 'configure terminal' -c 'router bgp 4200000001' -c 'address-family ipv4 unicast' \
    -c 'no network 198.18.101.0/24' -c 'exit-address-family' -c 'address-family ipv6 unicast' \
    -c 'no network 2001:2:0:101::/64'
wait_for "$OUT/new.msgs" '18c612650000$'
wait_for "$OUT/new.msgs" '402001000200000101$'
wait_for "$OUT/old.msgs" '18c612650000$'
wait_for "$OUT/addpath.msgs" '18c612650000$'
wait_for "$OUT/ibgp.msgs" '18c612650000$'

# NOTIFICATIONs: Cease/Administrative Shutdown with and without an RFC 9003 message.
vty -c 'configure terminal' -c 'router bgp 4200000001' \
    -c 'neighbor 198.18.0.2 shutdown message podbgp capture' \
    -c 'neighbor 198.18.0.3 shutdown' -c 'neighbor 198.18.0.4 shutdown' \
    -c 'neighbor 198.18.0.5 shutdown'
for p in new old addpath ibgp; do wait_for "$OUT/$p.msgs" '^CLOSED'; done

echo "FRR: $(/usr/lib/frr/bgpd --version | head -n 1)"
for p in new old addpath ibgp; do echo "== $p"; cat "$OUT/$p.msgs"; done
