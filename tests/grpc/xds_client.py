#!/usr/bin/env python3
"""A proxyless gRPC client (PyPI `grpcio`'s built-in xDS support) for Spar's interoperability tests.

It dials `xds:///<host>:<port>`; grpcio reads the xDS bootstrap named by the environment variable
GRPC_XDS_BOOTSTRAP (write one with `spar bootstrap grpc`) and asks the control plane there for the
listener, routes, clusters and endpoints of that target.

Usage:
  xds_client.py TARGET --calls N [--method M] [--metadata k=v ...] [--timeout S]
      one batch of N calls, one JSON summary line, exit
  xds_client.py TARGET --stdin
      one JSON batch per input line ({"calls": N, "method": "Call", "metadata": {..},
      "timeout": S}), one JSON summary line per batch, on one channel, until input ends

A summary: {"calls", "backends": {server name: count}, "codes": {status name: count},
"latency_ms": {"min", "p50", "p90", "max", "mean"}, "errors": [first distinct details]}.
Before the first batch the client waits (up to --ready-timeout seconds) for the channel to be
ready, so that xDS resolution is not counted as call latency; if it never becomes ready the
batch still runs and its codes say why.
"""

import argparse
import json
import sys
import time

import grpc

SERVICE = "spar.test.Echo"


def identity(b):
    return b


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[i], 3)


def run_batch(channel, batch):
    method = batch.get("method", "Call")
    calls = int(batch.get("calls", 1))
    timeout = float(batch.get("timeout", 10))
    metadata = tuple((k.lower(), str(v)) for k, v in (batch.get("metadata") or {}).items())
    stub = channel.unary_unary(
        f"/{SERVICE}/{method}", request_serializer=identity, response_deserializer=identity
    )
    backends, codes, errors, latencies = {}, {}, [], []
    for _ in range(calls):
        start = time.monotonic()
        try:
            reply = stub(b"ping", metadata=metadata, timeout=timeout)
            code = "OK"
            server = json.loads(reply).get("server", "?")
            backends[server] = backends.get(server, 0) + 1
        except grpc.RpcError as e:
            code = e.code().name
            detail = f"{code}: {e.details()}"
            if detail not in errors and len(errors) < 5:
                errors.append(detail)
        latencies.append((time.monotonic() - start) * 1000.0)
        codes[code] = codes.get(code, 0) + 1
    latencies.sort()
    return {
        "client": "python-grpcio " + grpc.__version__,
        "method": method,
        "calls": calls,
        "backends": backends,
        "codes": codes,
        "latency_ms": {
            "min": percentile(latencies, 0.0),
            "p50": percentile(latencies, 0.5),
            "p90": percentile(latencies, 0.9),
            "max": round(latencies[-1], 3) if latencies else None,
            "mean": round(sum(latencies) / len(latencies), 3) if latencies else None,
        },
        "errors": errors,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="xds:///host:port")
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--method", default="Call")
    p.add_argument("--metadata", action="append", default=[], metavar="K=V")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline, seconds")
    p.add_argument("--ready-timeout", type=float, default=20.0)
    p.add_argument("--stdin", action="store_true", help="read JSON batches from standard input")
    a = p.parse_args()

    channel = grpc.insecure_channel(a.target)
    ready = True
    try:
        grpc.channel_ready_future(channel).result(timeout=a.ready_timeout)
    except grpc.FutureTimeoutError:
        ready = False
        print(f"xds_client.py: channel to {a.target} not ready after {a.ready_timeout}s", file=sys.stderr)

    def emit(summary):
        summary["ready"] = ready
        print(json.dumps(summary, sort_keys=True), flush=True)

    if a.stdin:
        for line in sys.stdin:
            line = line.strip()
            if line:
                emit(run_batch(channel, json.loads(line)))
    else:
        md = dict(kv.split("=", 1) for kv in a.metadata)
        emit(run_batch(channel, {"calls": a.calls, "method": a.method, "metadata": md, "timeout": a.timeout}))
    channel.close()


if __name__ == "__main__":
    main()
