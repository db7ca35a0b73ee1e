"""A TUN device for the user-space decapsulators (gue_decap.py, gre_decap.py).

The device is created by this process (TUNSETIFF, not persistent) and brought
up here, so it disappears with the process. Inner packets written to it are
delivered by the kernel as if they had arrived on that interface: the VIP,
held on another interface of the namespace, accepts them (weak host model;
the test topology turns rp_filter off).
"""
import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def open_tun(name):
    """Create TUN device `name`, bring it up, return its file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", name.encode(), 0))
    flags = struct.unpack("16sH", ifr[:18])[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags | IFF_UP))
    s.close()
    return fd


def ones(data):
    """RFC 1071 ones-complement sum, folded (0xFFFF for a correct region)."""
    if len(data) % 2:
        data = data + b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s
