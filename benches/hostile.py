#!/usr/bin/env python3
"""Hostile clients against a running spfd, for the README's Security numbers:

  python3 benches/hostile.py [path/to/spfd]      (default target/release/spfd)

1. reflection: one source floods TXT queries for a 4096-bit DKIM key (EDNS payload
   4096) for 5 s; octets sent and received give the amplification, with RRL on (the
   defaults, loopback taken off the whitelist) and off;
2. TCP fairness: 2,000 idle connections from 127.0.0.2, then 50 TCP queries from
   127.0.0.1, and a client that keeps reconnecting from 127.0.0.3;
3. descriptors: the server's limit lowered (prlimit --pid) below what it holds, 1,100
   idle connections from 20 addresses, and the CPU it uses over 5 s.

Linux only (127/8 is all loopback); needs prlimit (util-linux).
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/spfd")
KEY = os.path.join(ROOT, "tests/data/keys/rsa4096.pub.pem")
NAME = "s4096._domainkey._spf.example.test"


def query(qid, name=NAME, payload=4096):
    q = struct.pack(">HHHHHH", qid & 0xFFFF, 0, 1, 0, 0, 1)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 16, 1)
    return q + b"\0" + struct.pack(">HHIH", 41, payload, 0, 0)


def start(rrl):
    work = tempfile.mkdtemp(prefix="spfd-hostile-")
    os.mkdir(f"{work}/policies")
    with open(f"{work}/policies/example.toml", "w") as f:
        f.write(f'domain = "example.test"\n[spf]\nrecord = "v=spf1 -all"\nmode = "passthrough"\n'
                f'[dkim.s4096]\nkey_file = "{KEY}"\n')
    with open(f"{work}/spfd.toml", "w") as f:
        f.write('[server]\nlisten = ["127.0.0.1:0"]\nnameservers = ["ns1.spfd.test"]\n'
                f'hostmaster = "h@spfd.test"\nstate_dir = "state"\n[server.rrl]\n{rrl}\n')
    proc = subprocess.Popen([BIN, "serve", "--config", f"{work}/spfd.toml"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "SPFD_LOG": "info"})
    for line in proc.stderr:
        if "serving addrs=[" in line:
            host, port = line.split("addrs=[")[1].split("]")[0].rsplit(":", 1)
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, (host, int(port))
    raise SystemExit("spfd did not start")


def reflection(rrl, label):
    proc, addr = start(rrl)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    got = {"octets": 0, "answers": 0, "tc": 0}
    done = threading.Event()

    def receive():
        s.settimeout(0.5)
        while True:
            try:
                data = s.recv(65535)
            except socket.timeout:
                if done.is_set():
                    return
                continue
            got["octets"] += len(data)
            got["answers"] += 1
            got["tc"] += (data[2] >> 1) & 1

    t = threading.Thread(target=receive)
    t.start()
    sent = octets_out = 0
    end = time.time() + 5
    while time.time() < end:
        q = query(sent)
        s.sendto(q, addr)
        sent += 1
        octets_out += len(q)
        if sent % 64 == 0:
            time.sleep(0.0005)
    done.set()
    t.join()
    proc.terminate()
    proc.wait()
    print(f"reflection, {label}: {sent} queries ({octets_out} octets) in 5 s; {got['answers']} answers "
          f"({got['tc']} truncated), {got['octets']} octets: amplification {got['octets'] / octets_out:.2f}")


def tcp_query(addr, local):
    c = socket.socket()
    c.settimeout(5)
    c.bind((local, 0))
    try:
        c.connect(addr)
        q = query(1, "_spf.example.test", 1232)
        c.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", c.recv(2))[0]
        return n > 0
    except OSError:
        return False
    finally:
        c.close()


def fairness():
    proc, addr = start("enabled = false")
    held = []
    for _ in range(2000):
        c = socket.socket()
        c.bind(("127.0.0.2", 0))
        c.connect(addr)
        held.append(c)
    time.sleep(1)
    answered = sum(tcp_query(addr, "127.0.0.1") for _ in range(50))
    reconnect = 0
    for _ in range(200):
        c = socket.socket()
        c.bind(("127.0.0.3", 0))
        try:
            c.connect(addr)
            held.append(c)
        except OSError:
            pass
    answered_after = sum(tcp_query(addr, "127.0.0.1") for _ in range(50))
    open_flood = 0
    for c in held[:2000]:
        c.setblocking(False)
        try:
            open_flood += c.recv(1) != b""
        except BlockingIOError:
            open_flood += 1
        except OSError:
            pass
    print(f"tcp fairness: 2000 idle connections from 127.0.0.2 ({open_flood} still open), "
          f"{answered}/50 queries from 127.0.0.1 answered; after 200 more from 127.0.0.3: {answered_after}/50")
    for c in held:
        c.close()
    proc.terminate()
    proc.wait()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descriptors():
    proc, addr = start("enabled = false")
    fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
    subprocess.run(["prlimit", "--pid", str(proc.pid), f"--nofile={fds + 50}:{fds + 50}"], check=True)
    held = []
    for i in range(1100):
        c = socket.socket()
        c.bind((f"127.0.1.{10 + i % 20}", 0))
        c.connect(addr)
        held.append(c)
    time.sleep(1)
    before, wall = cpu_seconds(proc.pid), time.time()
    time.sleep(5)
    cpu, wall = cpu_seconds(proc.pid) - before, time.time() - wall
    print(f"descriptors: limit {fds + 50}, 1100 idle connections: {cpu:.2f} CPU seconds in {wall:.1f} s")
    for c in held:
        c.close()
    proc.terminate()
    proc.wait()


if __name__ == "__main__":
    reflection("whitelist = []", "RRL on (defaults)")
    reflection("enabled = false", "RRL off")
    fairness()
    descriptors()
