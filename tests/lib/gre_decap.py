#!/usr/bin/env python3
"""User-space GRE decapsulator for a TUN-mode real server (--tun-type gre).

This kernel has no ip_gre module (`ip link add type gre` fails), so a real
server cannot terminate GRE itself. A raw IPPROTO_GRE socket receives the
packets (with their IPv4 header); this checks the GRE header (RFC 2784/2890:
version 0, protocol type 0x0800, the checksum when the C bit is set), skips
the optional checksum, key and sequence fields, and writes the inner IPv4
packet to its own TUN device, where the kernel delivers it to the VIP.

Every packet gets a line on stdout: "ok SRC LEN csum|nocsum" or "bad REASON".

usage: gre_decap.py TUN_DEVICE READY_FILE
"""
import os
import socket
import sys

from tundev import ones, open_tun

GRE_C, GRE_R, GRE_K, GRE_S = 0x8000, 0x4000, 0x2000, 0x1000


def main():
    dev, ready = sys.argv[1], sys.argv[2]
    tun = open_tun(dev)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    with open(ready, "w") as f:
        f.write("ready\n")
    while True:
        pkt, (src, _) = raw.recvfrom(65535)
        ihl = (pkt[0] & 0x0F) * 4
        gre = pkt[ihl:]
        if len(gre) < 4:
            print("bad short", flush=True)
            continue
        flags, proto = int.from_bytes(gre[0:2], "big"), int.from_bytes(gre[2:4], "big")
        if flags & 0x7 or flags & GRE_R or proto != 0x0800:
            print(f"bad header flags {flags:#x} proto {proto:#x}", flush=True)
            continue
        off = 4
        if flags & GRE_C:
            if ones(gre) != 0xFFFF:
                print("bad checksum", flush=True)
                continue
            off += 4
        off += 4 if flags & GRE_K else 0
        off += 4 if flags & GRE_S else 0
        inner = gre[off:]
        if len(inner) < 20 or inner[0] >> 4 != 4:
            print("bad inner", flush=True)
            continue
        os.write(tun, inner)
        csum = "csum" if flags & GRE_C else "nocsum"
        print(f"ok {src} {len(inner)} {csum}", flush=True)


if __name__ == "__main__":
    main()
