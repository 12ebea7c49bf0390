#!/usr/bin/env python3
"""A gRPC echo backend for Spar's proxyless interoperability tests, without generated code.

Every unary method of the service `spar.test.Echo` (`/spar.test.Echo/Call`, `/spar.test.Echo/Split`,
...) answers with JSON bytes naming this server, the method it was called as and the request
metadata it received, so that a client can tell which backend (subset) a route chose. A request
with metadata `x-echo-sleep-ms: N` is answered after N milliseconds (for route timeouts); the first
request with `x-echo-fail-once: KEY` fails with UNAVAILABLE, later ones with that KEY succeed (for
retries).

Usage: echo_server.py NAME [HOST]
Binds HOST (default 127.0.0.1) on a free port and prints that port alone on one stdout line.
Exits when its standard input closes (the test that started it went away) or on SIGTERM.
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "spar.test.Echo"


def identity(b):
    return b


class EchoHandler(grpc.GenericRpcHandler):
    """Answers any unary method of `spar.test.Echo` with this server's name."""

    def __init__(self, name):
        self.name = name
        self.failed_once = set()
        self.lock = threading.Lock()

    def service(self, handler_call_details):
        method = handler_call_details.method
        if not method.startswith("/" + SERVICE + "/"):
            return None
        name = self.name

        def unary(request, context):
            md = dict(context.invocation_metadata())
            if md.get("x-echo-sleep-ms"):
                time.sleep(int(md["x-echo-sleep-ms"]) / 1000.0)
            key = md.get("x-echo-fail-once")
            if key:
                with self.lock:
                    first = key not in self.failed_once
                    self.failed_once.add(key)
                if first:
                    context.abort(grpc.StatusCode.UNAVAILABLE, f"{name}: failing the first call for {key}")
            metadata = {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}
            return json.dumps(
                {"server": name, "method": method, "metadata": metadata, "request_bytes": len(request)}
            ).encode()

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=identity, response_serializer=identity
        )


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: echo_server.py NAME [HOST]")
    name = sys.argv[1]
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((EchoHandler(name),))
    port = server.add_insecure_port(f"{host}:0")
    if port == 0:
        sys.exit(f"echo_server.py: could not bind {host}:0")
    server.start()
    print(port, flush=True)

    def stop_on_eof():
        sys.stdin.read()
        server.stop(grace=None)

    threading.Thread(target=stop_on_eof, daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
