#!/usr/bin/env python3
"""first-reply.py ADDR TIMEOUT_S [INTERVAL_S]: one quiet prober for start-up
benchmarks.

Sends an ICMP echo request to the IPv4 address ADDR every INTERVAL_S
seconds (default 0.01) from ONE process, ignoring send errors (before the
daemon has added its route the kernel answers "Network is unreachable"),
and prints the wall-clock time (seconds since the epoch, microseconds) of
the first matching echo reply, then exits 0. Exits 1 when no reply came
within TIMEOUT_S, 2 on bad arguments. Needs root (raw socket).

Why not `ping` in a shell loop: ping exits at once while the route is
missing, so the loop spawned several processes every 10 ms, and on a
2-vCPU machine that fork storm took CPU from the daemons it was timing.
"""
import os
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    try:
        addr = socket.inet_ntoa(socket.inet_aton(sys.argv[1]))
        timeout = float(sys.argv[2])
        interval = float(sys.argv[3]) if len(sys.argv) == 4 else 0.01
    except (OSError, ValueError) as err:
        print(f"first-reply: bad argument: {err}", file=sys.stderr)
        return 2
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    seq = 0
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline:
            return 1
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            payload = struct.pack("!d", time.time()) + bytes(48)
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
            try:
                sock.sendto(packet, (addr, 0))
            except OSError:
                pass  # no route yet: try again at the next interval
            next_send = now + interval
        ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send, deadline) - time.monotonic()))
        if not ready:
            continue
        try:
            data, (src, _) = sock.recvfrom(2048)
        except BlockingIOError:
            continue
        t = time.time()
        ihl = (data[0] & 0x0F) * 4
        if src != addr or len(data) < ihl + 8:
            continue
        typ, _code, _sum, rid, _rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if typ == 0 and rid == ident:
            print(f"{t:.6f}")
            return 0


if __name__ == "__main__":
    sys.exit(main())
