#!/usr/bin/env python3
"""User-space IPIP and IPv6-in-IPv6 decapsulator for a TUN-mode real server.

This kernel has no ipip or ip6_tunnel module, so a real server cannot
terminate LVS-TUN tunnels itself. This reads IPIP packets (IP protocol 4)
from a raw IPv4 socket and IPv6-in-IPv6 packets (Next Header 41) from a raw
IPv6 socket (which hands over the payload after the outer IPv6 header),
strips the outer header and writes the inner packet to a TUN device that
carries the VIP, where the kernel delivers it to the local server as if it
had arrived directly. Replies leave through the normal routing table.

usage: ipip_decap.py TUN_DEVICE READY_FILE
"""
import fcntl
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main():
    dev, ready = sys.argv[1], sys.argv[2]
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
    raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41)
    with open(ready, "w") as f:
        f.write("ready\n")
    while True:
        for s in select.select([raw, raw6], [], [])[0]:
            pkt = s.recv(65535)
            if s is raw:
                ihl = (pkt[0] & 0x0F) * 4
                inner = pkt[ihl:]
                if len(inner) >= 20 and inner[0] >> 4 == 4:
                    os.write(tun, inner)
            elif len(pkt) >= 40 and pkt[0] >> 4 == 6:
                os.write(tun, pkt)


if __name__ == "__main__":
    main()
