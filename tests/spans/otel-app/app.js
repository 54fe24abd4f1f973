// Creates nested spans with known names using the real OpenTelemetry JS SDK and exports them
// to Flamestream's receivers over OTLP/gRPC and OTLP/HTTP (protobuf), both gzip-compressed
// (the HTTP exporter then streams a chunked body). Host and process resource detectors supply
// host.name and process.pid. Prints one JSON line describing what it created, after the
// exporters have been flushed, so the test can compare it with what arrived.
//
//   node app.js --grpc http://127.0.0.1:4317 --http http://127.0.0.1:4318/v1/traces
'use strict';

const os = require('os');
const api = require('@opentelemetry/api');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter: GrpcExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { OTLPTraceExporter: ProtoExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const {
  detectResources, hostDetector, processDetector, resourceFromAttributes,
} = require('@opentelemetry/resources');

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

// Keeps the CPU busy for `ms`, so the spans have real duration (and, with the agent running,
// samples inside them).
function burn(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.sqrt(x + 1);
  return x;
}

async function main() {
  api.diag.setLogger(new api.DiagConsoleLogger(), api.DiagLogLevel.ERROR);
  const resource = resourceFromAttributes({ 'service.name': 'otel-span-app' }).merge(
    detectResources({ detectors: [hostDetector, processDetector] }));
  if (resource.waitForAsyncAttributes) await resource.waitForAsyncAttributes();

  const processors = [];
  if (arg('--grpc')) {
    processors.push(new BatchSpanProcessor(
      new GrpcExporter({ url: arg('--grpc'), compression: 'gzip' })));
  }
  if (arg('--http')) {
    processors.push(new BatchSpanProcessor(
      new ProtoExporter({ url: arg('--http'), compression: 'gzip' })));
  }
  const provider = new NodeTracerProvider({ resource, spanProcessors: processors });
  provider.register();
  const tracer = api.trace.getTracer('flamestream-test');

  const created = [];
  // Runs `fn` inside an active span named `name`, recording its ids and its parent's.
  function inSpan(name, parent, fn) {
    return tracer.startActiveSpan(name, { kind: api.SpanKind.INTERNAL }, (span) => {
      const ctx = span.spanContext();
      created.push({ name, traceId: ctx.traceId, spanId: ctx.spanId,
                     parentSpanId: parent ? parent.spanContext().spanId : '' });
      try {
        return fn(span);
      } finally {
        span.end();
      }
    });
  }

  inSpan('checkout', null, (root) => {
    burn(20);
    inSpan('load-cart', root, (cart) => {
      burn(20);
      inSpan('price-items', cart, () => burn(20));
    });
    inSpan('render', root, () => burn(20));
  });

  await provider.forceFlush();
  await provider.shutdown();
  const attrs = resource.attributes;
  process.stdout.write(JSON.stringify({
    pid: process.pid,
    hostname: os.hostname(),
    resource: { 'host.name': attrs['host.name'], 'process.pid': attrs['process.pid'] },
    spans: created,
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`otel app failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
