#!/usr/bin/env python3
"""Minimal BGP capture listener for tests/wire/capture_frr.sh.

Listens on TCP port 179 on each address given on the command line, completes the OPEN
exchange with whatever connects (FRR bgpd in our case) using a per-address capability
profile, and appends every message it *receives* to OUTDIR/<profile>.msgs as
"<type> <hex of the whole message>" lines. It never sends UPDATEs, so FRR's messages are
the only content captured. Stops when all connections have closed or on SIGTERM.

Usage: capture_listener.py OUTDIR ADDR[=PROFILE] ...
Profiles (capabilities we advertise, which decide how FRR encodes):
  new      MP ipv4+ipv6 unicast, route refresh, 4-octet AS 65002
  old      MP ipv4 unicast, route refresh, no 4-octet AS (AS 65003) -> FRR sends AS4_PATH
  addpath  MP ipv4 unicast, route refresh, 4-octet AS 65004, ADD-PATH ipv4 receive
  ibgp     MP ipv4 unicast, route refresh, 4-octet AS 4200000001 (FRR's own AS: iBGP)
All three also advertise graceful restart (helper), without which FRR sends no End-of-RIB.
"""
import os
import socket
import struct
import sys
import threading


def cap(code, value=b""):
    return bytes([code, len(value)]) + value


def mp(afi, safi):
    return cap(1, struct.pack("!HBB", afi, 0, safi))


def gr(*families):
    """Graceful restart (RFC 4724), helper only: FRR sends End-of-RIB only when it is negotiated."""
    return cap(64, struct.pack("!H", 120) + b"".join(struct.pack("!HBB", a, s, 0) for a, s in families))


PROFILES = {
    "new": (65002, [mp(1, 1), mp(2, 1), cap(2), cap(65, struct.pack("!I", 65002)),
                    gr((1, 1), (2, 1))]),
    "old": (65003, [mp(1, 1), cap(2), gr((1, 1))]),
    "addpath": (65004, [mp(1, 1), cap(2), cap(65, struct.pack("!I", 65004)),
                        cap(69, struct.pack("!HBB", 1, 1, 1)), gr((1, 1))]),
    "ibgp": (4200000001, [mp(1, 1), cap(2), cap(65, struct.pack("!I", 4200000001)), gr((1, 1))]),
}


def message(mtype, body):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), mtype) + body


def open_msg(asn, bgp_id, caps):
    params = b"".join(bytes([2, len(c)]) + c for c in caps)
    my_as = asn if asn < 65536 else 23456  # AS_TRANS (RFC 6793)
    body = struct.pack("!BHH4sB", 4, my_as, 180, socket.inet_aton(bgp_id), len(params)) + params
    return message(1, body)


def serve(conn, addr, profile, outdir):
    asn, caps = PROFILES[profile]
    path = os.path.join(outdir, profile + ".msgs")
    buf = b""
    with conn, open(path, "a") as out:
        while True:
            data = conn.recv(65536)
            if not data:
                out.write("CLOSED\n")
                return
            buf += data
            while len(buf) >= 19:
                length = struct.unpack("!H", buf[16:18])[0]
                if length < 19 or len(buf) < length:
                    break
                msg, buf = buf[:length], buf[length:]
                mtype = msg[18]
                out.write("%d %s\n" % (mtype, msg.hex()))
                out.flush()
                if mtype == 1:
                    conn.sendall(open_msg(asn, addr, caps))
                    conn.sendall(message(4, b""))
                elif mtype == 4:
                    conn.sendall(message(4, b""))
                elif mtype == 3:
                    out.write("CLOSED\n")
                    return


def listen(addr, profile, outdir):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 179))
    s.listen(1)
    while True:
        conn, _ = s.accept()
        serve(conn, addr, profile, outdir)


def main():
    outdir = sys.argv[1]
    threads = []
    for spec in sys.argv[2:]:
        addr, _, profile = spec.partition("=")
        t = threading.Thread(target=listen, args=(addr, profile, outdir), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
