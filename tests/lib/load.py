#!/usr/bin/env python3
"""Bounded client load through a VIP, for the e2e fault and soak tests.

Runs inside the client namespace (tests/common/load.rs starts and drives it).
Kinds of work, each on its own threads:

  new   HTTP/1.0 GET / on a fresh TCP connection each time (connection churn)
  big   GET /big (102400 bytes) on a fresh connection; the length is checked
  held  keep-alive connections opened before "ready"; each sends GET / every
        --held-interval ms. With --held-renew K a connection is closed and
        replaced after K requests (churn); without it the connection must
        live for the whole run: an error ends it. The server closing a
        keep-alive connection politely (Connection: close, nginx's
        keepalive_requests) is not an error; it is reopened.
  udp   one datagram to VIP:--udp-port from a fresh socket (a new flow), the
        echo awaited
  junk  malformed and unsolicited frames on an AF_PACKET socket to the
        director's MAC (its drop paths must free every buffer)

With --fresh-ports, new and big connections and UDP flows bind their
source ports in turn from 10000-32767 (below the kernel's ephemeral range),
wrapping around: a tuple comes back only after 22768 others, long after
rvsd has forgotten it. Without it the kernel picks ports and reuses them
after a few thousand connections, as real clients do; a reused tuple meets
whatever entry rvsd still keeps for it (a SYN on a TIME_WAIT/CLOSE entry
ends it and is scheduled afresh, as with the kernel's conn_reuse_mode=1;
see also tests/README.md).

Control on stdin: "mark" starts the next phase and is answered "phase N";
"stop" or end of input ends the run; --duration bounds it regardless.
stdout: "ready" once the held connections are open, "phase N" per mark, then
one JSON line with the counts of every kind per phase (the phase in which an
operation started), the server that answered ("rs1"/"rs2"), and the first
few error messages. A failure is counted as "err" when the operation also
failed in the phase it started in, as "err_late" when a later phase had
begun by then: an operation in flight when the test breaks something and
marks a phase belongs to the phase before but fails because of the break.
Every socket operation has a timeout (--timeout).
"""

import argparse
import json
import os
import random
import socket
import struct
import sys
import threading
import time

lock = threading.Lock()
phase = 0
stop = threading.Event()
MAX_ERRORS = 5


class Counts:
    """Per-phase outcome counts of one kind of work."""

    def __init__(self):
        self.by_phase = []

    def _slot(self, p):
        while len(self.by_phase) <= p:
            self.by_phase.append({"ok": 0, "err": 0, "err_late": 0, "servers": {},
                                  "errors": []})
        return self.by_phase[p]

    def ok(self, p, server):
        with lock:
            s = self._slot(p)
            s["ok"] += 1
            s["servers"][server] = s["servers"].get(server, 0) + 1

    def err(self, p, msg):
        with lock:
            s = self._slot(p)
            if phase == p:
                s["err"] += 1
            else:
                s["err_late"] += 1
                msg = "(failed in phase %d) %s" % (phase, msg)
            if len(s["errors"]) < MAX_ERRORS:
                s["errors"].append(msg)

    def report(self, phases):
        with lock:
            for p in range(phases):
                self._slot(p)
            return list(self.by_phase)


def now_phase():
    with lock:
        return phase


def recv_until_close(s, limit=1 << 20):
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            return data
        data += c
        if len(data) > limit:
            raise OSError("answer too long")


FRESH_LOW, FRESH_HIGH = 10000, 32767
fresh_next = {socket.SOCK_STREAM: FRESH_LOW, socket.SOCK_DGRAM: FRESH_LOW}


def fresh_socket(a, kind=socket.SOCK_STREAM):
    """A socket bound to the next free port of the fresh range."""
    for _ in range(FRESH_HIGH - FRESH_LOW + 1):
        with lock:
            port = fresh_next[kind]
            fresh_next[kind] = port + 1 if port < FRESH_HIGH else FRESH_LOW
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((a.client_ip, port))
            return s
        except OSError:
            s.close()
    raise OSError("no free port in the fresh range")


def http_once(a, path):
    if a.fresh_ports:
        s = fresh_socket(a)
        s.settimeout(a.timeout)
        try:
            s.connect((a.vip, a.port))
        except OSError:
            s.close()
            raise
    else:
        s = socket.create_connection((a.vip, a.port), timeout=a.timeout)
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.0\r\nHost: vip\r\n\r\n")
        data = recv_until_close(s)
    finally:
        s.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise OSError("no HTTP header in %d bytes" % len(data))
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise OSError("status %r" % status)
    return body


def worker_new(a, counts):
    while not stop.is_set():
        p = now_phase()
        try:
            body = http_once(a, "/")
            counts.ok(p, body.decode(errors="replace").strip())
        except Exception as e:  # noqa: BLE001 - every failure is counted
            counts.err(p, "new: %s" % e)
            time.sleep(0.01)
        if a.pace:
            time.sleep(a.pace / 1000.0)


def worker_big(a, counts):
    while not stop.is_set():
        p = now_phase()
        try:
            body = http_once(a, "/big")
            if len(body) != 102400:
                raise OSError("short body: %d bytes" % len(body))
            counts.ok(p, "big")
        except Exception as e:  # noqa: BLE001
            counts.err(p, "big: %s" % e)
            time.sleep(0.01)
        if a.pace:
            time.sleep(a.pace / 1000.0)


class Held:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, a):
        self.a = a
        self.sock = socket.create_connection((a.vip, a.port), timeout=a.timeout)
        self.buf = b""
        self.sent = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def exchange(self):
        """One GET /; returns (body, server_wants_close)."""
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
        self.sent += 1
        while b"\r\n\r\n" not in self.buf:
            c = self.sock.recv(65536)
            if not c:
                raise OSError("closed by peer after %d requests" % self.sent)
            self.buf += c
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if b" 200 " not in lines[0] + b" ":
            raise OSError("status %r" % lines[0])
        length, close = None, False
        for h in lines[1:]:
            k, _, v = h.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v.strip())
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        if length is None:
            raise OSError("no Content-Length")
        while len(rest) < length:
            c = self.sock.recv(65536)
            if not c:
                raise OSError("closed mid-body")
            rest += c
        body, self.buf = rest[:length], rest[length:]
        return body.decode(errors="replace").strip(), close


def worker_held(a, conn, counts, info):
    """Drives one held connection until the run stops. `info` records the
    server of every connection it used."""
    served = 0
    while not stop.wait(a.held_interval / 1000.0):
        p = now_phase()
        try:
            if conn is None:
                conn = Held(a)
                served = 0
            body, close = conn.exchange()
            served += 1
            counts.ok(p, body)
            with lock:
                if info["server"] is None:
                    info["server"] = body
                elif info["server"] != body and not a.held_renew:
                    info["switched"] = True
            if close or (a.held_renew and served >= a.held_renew):
                conn.close()
                conn = None
                if close:
                    info["renewed_by_server"] += 1
        except Exception as e:  # noqa: BLE001
            counts.err(p, "held: %s" % e)
            if conn is not None:
                conn.close()
            if not a.held_renew:
                return  # a held connection that breaks stays broken
            conn = None
            time.sleep(0.05)
    if conn is not None:
        conn.close()


def worker_udp(a, counts):
    n = 0
    while not stop.is_set():
        p = now_phase()
        n += 1
        try:
            if a.fresh_ports:
                s = fresh_socket(a, socket.SOCK_DGRAM)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as e:
            counts.err(p, "udp: %s" % e)
            continue
        s.settimeout(a.timeout)
        try:
            msg = b"u%d" % n
            s.sendto(msg, (a.vip, a.udp_port))
            d, _ = s.recvfrom(2048)
            server, _, echo = d.partition(b":")
            if echo != msg:
                raise OSError("echo %r for %r" % (d, msg))
            counts.ok(p, server.decode(errors="replace"))
        except Exception as e:  # noqa: BLE001
            counts.err(p, "udp: %s" % e)
        finally:
            s.close()
        if a.pace:
            time.sleep(a.pace / 1000.0)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, flags_frag=0, bad_csum=False, ihl=5, tot=None):
    h = struct.pack(
        "!BBHHHBBH4s4s",
        (4 << 4) | ihl,
        0,
        tot if tot is not None else 20 + len(payload),
        random.randrange(65536),
        flags_frag,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    c = csum(h)
    if bad_csum:
        c ^= 0x5A5A
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def junk_frames(a, src_mac, dst_mac):
    """Frames the director must drop (or answer) and free, never forward."""
    eth = lambda et: dst_mac + src_mac + struct.pack("!H", et)  # noqa: E731
    cip, vip = a.client_ip, a.vip
    sport = random.randrange(1000, 2000)  # below the kernel's ephemeral range
    tcp_ack = struct.pack("!HHIIBBHHH", sport, a.port, 1, 1, 5 << 4, 0x10, 1024, 0, 0)
    udp_noservice = struct.pack("!HHHH", sport, 9, 12, 0) + b"junk"
    arp_other = struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(cip),
        b"\0" * 6, socket.inet_aton("10.0.0.%d" % random.randrange(150, 250)))
    return [
        eth(0x0800) + ipv4(cip, vip, 6, tcp_ack, bad_csum=True),          # bad IPv4 checksum
        # A first fragment (MF). With net_af_packet ports the kernel
        # defragments for the packet socket (DPDK asks for
        # PACKET_FANOUT_FLAG_DEFRAG), so rvs never sees it there.
        eth(0x0800) + ipv4(cip, vip, 17, udp_noservice, flags_frag=0x2000),
        eth(0x0800) + ipv4(cip, vip, 6, tcp_ack),                         # TCP, no conn, not SYN
        eth(0x0800) + ipv4(cip, vip, 17, udp_noservice),                  # no service
        eth(0x0800) + ipv4(cip, vip, 47, b"\0" * 8),                      # GRE to the VIP
        eth(0x0800) + ipv4(cip, vip, 6, tcp_ack[:8]),                     # truncated TCP
        eth(0x0800) + ipv4(cip, vip, 6, tcp_ack, tot=1400),               # length beyond frame
        eth(0x0800) + ipv4(cip, vip, 6, tcp_ack, ihl=3),                  # IHL < 5
        eth(0x0806) + arp_other,                                          # ARP for someone else
        eth(0x88B5) + os.urandom(random.randrange(0, 200)),               # unknown ethertype
        eth(0x86DD) + os.urandom(60),                                     # IPv6
    ]


def worker_junk(a, sent):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.junk_iface, 0))
    src_mac = s.getsockname()[4]
    dst_mac = bytes.fromhex(a.junk_dst_mac.replace(":", ""))
    while not stop.is_set():
        for f in junk_frames(a, src_mac, dst_mac):
            try:
                s.send(f)
                with lock:
                    sent[0] += 1
            except OSError:
                pass
        stop.wait(a.junk_pause / 1000.0)
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", default="10.0.0.100")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--client-ip", default="10.0.0.2")
    ap.add_argument("--new", type=int, default=0)
    ap.add_argument("--big", type=int, default=0)
    ap.add_argument("--held", type=int, default=0)
    ap.add_argument("--held-interval", type=int, default=100, help="ms")
    ap.add_argument("--held-renew", type=int, default=0)
    ap.add_argument("--udp", type=int, default=0)
    ap.add_argument("--udp-port", type=int, default=5353)
    ap.add_argument("--junk", action="store_true")
    ap.add_argument("--junk-iface", default="eth0")
    ap.add_argument("--junk-dst-mac", default="")
    ap.add_argument("--junk-pause", type=int, default=20, help="ms between rounds")
    ap.add_argument("--fresh-ports", action="store_true")
    ap.add_argument("--pace", type=int, default=0, help="ms pause after each new/big/udp op")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--duration", type=float, default=60.0, help="hard bound, s")
    a = ap.parse_args()

    counts = {k: Counts() for k in ("new", "big", "udp")}
    held_info = []
    threads = []
    for _ in range(a.held):
        info = {"server": None, "switched": False, "renewed_by_server": 0, "counts": Counts()}
        held_info.append(info)
        conn = Held(a)
        # One exchange before "ready": the connection is established and
        # its server known.
        body, _ = conn.exchange()
        info["server"] = body
        threads.append(threading.Thread(target=worker_held, args=(a, conn, info["counts"], info)))
    for kind, n, fn in (("new", a.new, worker_new), ("big", a.big, worker_big),
                        ("udp", a.udp, worker_udp)):
        threads += [threading.Thread(target=fn, args=(a, counts[kind])) for _ in range(n)]
    junk_sent = [0]
    if a.junk:
        threads.append(threading.Thread(target=worker_junk, args=(a, junk_sent)))
    for t in threads:
        t.daemon = True
        t.start()
    print("ready", flush=True)

    def control():
        global phase
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "mark":
                with lock:
                    phase += 1
                    p = phase
                print("phase %d" % p, flush=True)
            elif cmd == "stop":
                break
        stop.set()

    threading.Thread(target=control, daemon=True).start()
    stop.wait(a.duration)
    stop.set()
    for t in threads:
        t.join(a.timeout * 2 + 5)
    phases = now_phase() + 1
    held = []
    for info in held_info:
        r = info["counts"].report(phases)
        held.append({
            "server": info["server"],
            "switched": info["switched"],
            "renewed_by_server": info["renewed_by_server"],
            "ok": [x["ok"] for x in r],
            "err": [x["err"] + x["err_late"] for x in r],
            "errors": [e for x in r for e in x["errors"]][:MAX_ERRORS],
        })
    out = {k: c.report(phases) for k, c in counts.items()}
    out["held"] = held
    out["junk_sent"] = junk_sent[0]
    out["phases"] = phases
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
