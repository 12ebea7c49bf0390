#!/usr/bin/env node
// A proxyless gRPC client (npm `@grpc/grpc-js` with `@grpc/grpc-js-xds`) for Spar's
// interoperability tests; the same behaviour and output as xds_client.py.
//
// It dials `xds:///<host>:<port>`; grpc-js-xds reads the xDS bootstrap named by the
// environment variable GRPC_XDS_BOOTSTRAP (write one with `spar bootstrap grpc`).
//
// Usage:
//   node xds_client.js TARGET --calls N [--method M] [--metadata k=v ...] [--timeout S]
//   node xds_client.js TARGET --stdin     (one JSON batch per input line, one summary per batch)
// A batch: {"calls": N, "method": "Call", "metadata": {...}, "timeout": S}.
// A summary: {"calls", "backends": {name: count}, "codes": {status name: count},
// "latency_ms": {"min", "p50", "p90", "max", "mean"}, "errors": [first distinct details], "ready"}.
'use strict';

const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');
const grpcXds = require('@grpc/grpc-js-xds');

grpcXds.register();

const SERVICE = 'spar.test.Echo';
const identity = (b) => b;

function parseArgs(argv) {
  const a = { calls: 1, method: 'Call', metadata: {}, timeout: 10, readyTimeout: 20, stdin: false };
  const rest = argv.slice(2);
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const next = () => {
      if (i + 1 >= rest.length) throw new Error(`${arg} needs a value`);
      return rest[++i];
    };
    switch (arg) {
      case '--calls': a.calls = Number(next()); break;
      case '--method': a.method = next(); break;
      case '--timeout': a.timeout = Number(next()); break;
      case '--ready-timeout': a.readyTimeout = Number(next()); break;
      case '--stdin': a.stdin = true; break;
      case '--metadata': {
        const kv = next();
        const eq = kv.indexOf('=');
        if (eq < 0) throw new Error(`--metadata ${kv}: want K=V`);
        a.metadata[kv.slice(0, eq)] = kv.slice(eq + 1);
        break;
      }
      default:
        if (arg.startsWith('--') || a.target) throw new Error(`unexpected argument ${arg}`);
        a.target = arg;
    }
  }
  if (!a.target) throw new Error('usage: xds_client.js xds:///host:port [--calls N | --stdin]');
  return a;
}

// A client class from a service definition with Buffer in and Buffer out (no codegen); other
// methods of the same service are called through the same channel by path.
const EchoClient = grpc.makeGenericClientConstructor(
  {
    Call: {
      path: `/${SERVICE}/Call`,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  SERVICE,
);

function unary(client, method, metadata, timeoutSeconds) {
  return new Promise((resolve) => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata || {})) md.set(k.toLowerCase(), String(v));
    const deadline = new Date(Date.now() + timeoutSeconds * 1000);
    client.makeUnaryRequest(
      `/${SERVICE}/${method}`,
      identity,
      identity,
      Buffer.from('ping'),
      md,
      { deadline },
      (err, reply) => resolve({ err, reply }),
    );
  });
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.floor(q * sorted.length));
  return Math.round(sorted[i] * 1000) / 1000;
}

async function runBatch(client, batch) {
  const method = batch.method || 'Call';
  const calls = Number(batch.calls ?? 1);
  const timeout = Number(batch.timeout ?? 10);
  const backends = {};
  const codes = {};
  const errors = [];
  const latencies = [];
  for (let n = 0; n < calls; n++) {
    const start = process.hrtime.bigint();
    const { err, reply } = await unary(client, method, batch.metadata, timeout);
    latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
    let code = 'OK';
    if (err) {
      code = grpc.status[err.code] ?? String(err.code);
      const detail = `${code}: ${err.details}`;
      if (!errors.includes(detail) && errors.length < 5) errors.push(detail);
    } else {
      const server = JSON.parse(reply.toString()).server ?? '?';
      backends[server] = (backends[server] ?? 0) + 1;
    }
    codes[code] = (codes[code] ?? 0) + 1;
  }
  latencies.sort((x, y) => x - y);
  const round = (v) => Math.round(v * 1000) / 1000;
  return {
    client: `node grpc-js ${require('@grpc/grpc-js/package.json').version} grpc-js-xds ${require('@grpc/grpc-js-xds/package.json').version}`,
    method,
    calls,
    backends,
    codes,
    latency_ms: {
      min: percentile(latencies, 0),
      p50: percentile(latencies, 0.5),
      p90: percentile(latencies, 0.9),
      max: latencies.length ? round(latencies[latencies.length - 1]) : null,
      mean: latencies.length ? round(latencies.reduce((s, v) => s + v, 0) / latencies.length) : null,
    },
    errors,
  };
}

function waitReady(client, seconds) {
  return new Promise((resolve) => {
    client.waitForReady(new Date(Date.now() + seconds * 1000), (err) => resolve(!err));
  });
}

async function main() {
  const a = parseArgs(process.argv);
  const client = new EchoClient(a.target, grpc.credentials.createInsecure());
  const ready = await waitReady(client, a.readyTimeout);
  if (!ready) console.error(`xds_client.js: channel to ${a.target} not ready after ${a.readyTimeout}s`);
  const emit = (summary) => {
    summary.ready = ready;
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  };
  if (a.stdin) {
    const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    for await (const line of rl) {
      if (line.trim()) emit(await runBatch(client, JSON.parse(line)));
    }
  } else {
    emit(await runBatch(client, { calls: a.calls, method: a.method, metadata: a.metadata, timeout: a.timeout }));
  }
  client.close();
}

main().catch((e) => {
  console.error(`xds_client.js: ${e.stack || e}`);
  process.exit(2);
});
