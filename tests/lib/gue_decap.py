#!/usr/bin/env python3
"""User-space GUE decapsulator for a TUN-mode real server (--tun-type gue).

This kernel has no fou module (`ip fou add` fails), so a real server cannot
terminate GUE itself. A UDP socket on the tunnel port receives the
datagrams: the kernel's UDP layer has already checked a non-zero UDP
checksum (a bad one is dropped and counted in UdpInCsumErrors) and accepts
checksum 0 as "none". This checks the GUE header (draft-ietf-intarea-gue,
the kernel's struct guehdr: version 0, C bit 0, proto_ctype 4 = IPv4), skips
its hlen*4 option bytes, and writes the inner IPv4 packet to its own TUN
device, where the kernel delivers it to the VIP.

Every datagram gets a line on stdout: "ok SRC:SPORT LEN" or "bad REASON".

usage: gue_decap.py PORT TUN_DEVICE READY_FILE
"""
import os
import socket
import sys

from tundev import open_tun


def main():
    port, dev, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    tun = open_tun(dev)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    with open(ready, "w") as f:
        f.write("ready\n")
    while True:
        data, (src, sport) = sock.recvfrom(65535)
        if len(data) < 4:
            print("bad short", flush=True)
            continue
        version, control, hlen = data[0] >> 6, (data[0] >> 5) & 1, data[0] & 0x1F
        proto, flags = data[1], int.from_bytes(data[2:4], "big")
        if version != 0 or control or proto != 4:
            print(f"bad header v{version} c{control} proto {proto}", flush=True)
            continue
        inner = data[4 + hlen * 4:]
        if len(inner) < 20 or inner[0] >> 4 != 4:
            print("bad inner", flush=True)
            continue
        os.write(tun, inner)
        print(f"ok {src}:{sport} {len(inner)} hlen {hlen} flags {flags:#x}", flush=True)


if __name__ == "__main__":
    main()
