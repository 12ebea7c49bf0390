#!/usr/bin/env python3
"""The floor under a full push: N loopback TCP connections each carrying BYTES bytes one
way, written by one process and read by another, with no HTTP/2, gRPC or protobuf.

bench/control-plane.sh runs it with the byte count its full push put through loopback, so
the push's time can be read against what the machine needs just to move those bytes.

Usage: tcp_floor.py CONNECTIONS BYTES   (prints one JSON line)
"""
import json
import os
import selectors
import socket
import sys
import time

WRITE = 256 << 10
READ = 256 << 10


def read_all(port, connections, total):
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    sel = selectors.DefaultSelector()
    left = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        left[s] = total
    buf = bytearray(READ)
    while left:
        for key, _ in sel.select():
            s = key.fileobj
            try:
                n = s.recv_into(buf)
            except BlockingIOError:
                continue
            if n == 0:
                sys.exit("tcp_floor: connection closed early")
            left[s] -= n
            if left[s] <= 0:
                sel.unregister(s)
                del left[s]


def main():
    connections, total = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(connections)
    port = listener.getsockname()[1]
    reader = os.fork()
    if reader == 0:
        read_all(port, connections, total)
        os._exit(0)
    conns = [listener.accept()[0] for _ in range(connections)]
    payload = memoryview(b"x" * total)
    sel = selectors.DefaultSelector()
    at = {}
    for c in conns:
        c.setblocking(False)
        sel.register(c, selectors.EVENT_WRITE)
        at[c] = 0
    start, cpu0 = time.monotonic(), os.times()
    while at:
        for key, _ in sel.select():
            c = key.fileobj
            try:
                n = c.send(payload[at[c] : at[c] + WRITE])
            except BlockingIOError:
                continue
            at[c] += n
            if at[c] >= total:
                sel.unregister(c)
                del at[c]
    _, status = os.waitpid(reader, 0)
    end, cpu1 = time.monotonic(), os.times()
    if status != 0:
        sys.exit("tcp_floor: the reader failed")
    print(json.dumps({
        "seconds": round(end - start, 3),
        "writer_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2),
        "reader_cpu_s": round(cpu1.children_user + cpu1.children_system, 2),
    }))


if __name__ == "__main__":
    main()
