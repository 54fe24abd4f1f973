// Burns CPU inside nested spans with known names, for the correlator's end-to-end test
// (tests/correlator_e2e). The real OpenTelemetry JS SDK exports the spans: traces alternate
// between the OTLP/gRPC and the OTLP/HTTP protobuf exporter, so both receivers carry half of
// them. Host and process resource detectors supply host.name and process.pid (what the span
// router needs to place a span on the agent's node and process).
//
// Each iteration: "checkout" { burn; "price" { burn }; "tax" { burn }; burn } then burn with
// no span active. Writes its truth log to --truth: one JSON line per span, with the span's
// own exported start and end times (Unix ns, as decimal strings: they exceed 2^53).
//
//   node burn.js --grpc http://127.0.0.1:4317 --http http://127.0.0.1:4318/v1/traces \
//       --truth /tmp/truth.jsonl --duration-ms 10000
// Prints "ready <pid>", waits for a line on stdin (the test starts the agent on that pid
// first), burns, flushes both exporters, writes the truth log, prints "done <spans>".
'use strict';

const fs = require('fs');
const readline = require('readline');
const api = require('@opentelemetry/api');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter: GrpcExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { OTLPTraceExporter: ProtoExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const {
  detectResources, hostDetector, processDetector, resourceFromAttributes,
} = require('@opentelemetry/resources');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function burn(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.sqrt(x + 1);
  return x;
}

function hrToNs(t) {
  return (BigInt(t[0]) * 1000000000n + BigInt(t[1])).toString();
}

// Sends each finished span to one of two processors by its trace id, so one trace (and its
// nesting) travels whole over one protocol and both protocols are exercised.
class SplitProcessor {
  constructor(a, b, truth) {
    this.a = a;
    this.b = b;
    this.truth = truth;
  }
  onStart(span, ctx) {
    this.a.onStart(span, ctx);
    this.b.onStart(span, ctx);
  }
  onEnd(span) {
    const c = span.spanContext();
    const viaGrpc = parseInt(c.traceId.slice(-1), 16) % 2 === 0;
    this.truth.push({
      name: span.name, traceId: c.traceId, spanId: c.spanId,
      parentSpanId: span.parentSpanContext ? span.parentSpanContext.spanId
        : (span.parentSpanId || ''),
      startNs: hrToNs(span.startTime), endNs: hrToNs(span.endTime), pid: process.pid,
      via: viaGrpc ? 'grpc' : 'http',
    });
    (viaGrpc ? this.a : this.b).onEnd(span);
  }
  forceFlush() { return Promise.all([this.a.forceFlush(), this.b.forceFlush()]); }
  shutdown() { return Promise.all([this.a.shutdown(), this.b.shutdown()]); }
}

async function main() {
  api.diag.setLogger(new api.DiagConsoleLogger(), api.DiagLogLevel.ERROR);
  const resource = resourceFromAttributes({ 'service.name': 'correlator-e2e' }).merge(
    detectResources({ detectors: [hostDetector, processDetector] }));
  if (resource.waitForAsyncAttributes) await resource.waitForAsyncAttributes();

  const batch = { scheduledDelayMillis: 500, maxExportBatchSize: 256 };
  const truth = [];
  const split = new SplitProcessor(
    new BatchSpanProcessor(new GrpcExporter({ url: arg('--grpc') }), batch),
    new BatchSpanProcessor(new ProtoExporter({ url: arg('--http') }), batch),
    truth);
  const provider = new NodeTracerProvider({ resource, spanProcessors: [split] });
  provider.register();
  const tracer = api.trace.getTracer('flamestream-correlator-e2e');

  process.stdout.write(`ready ${process.pid}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once('line', resolve));
  rl.close();

  const inSpan = (name, fn) => tracer.startActiveSpan(name, (span) => {
    try {
      return fn();
    } finally {
      span.end();
    }
  });
  const durationMs = Number(arg('--duration-ms', '10000'));
  const until = Date.now() + durationMs;
  while (Date.now() < until) {
    inSpan('checkout', () => {
      burn(20);
      inSpan('price', () => burn(40));
      inSpan('tax', () => burn(30));
      burn(10);
    });
    burn(40);  // outside every span
    // Let the exporters' timers and sockets run between iterations.
    await new Promise((resolve) => setImmediate(resolve));
  }

  // The truth first (every span has ended), so it is there even when an export fails.
  fs.writeFileSync(arg('--truth'), truth.map((t) => JSON.stringify(t)).join('\n') + '\n');
  await provider.forceFlush();
  await provider.shutdown();
  process.stdout.write(`done ${truth.length}\n`);
}

main().catch((err) => {
  process.stderr.write(`burn app failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
