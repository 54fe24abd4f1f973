'use strict';
// Flamestream demo service (docker-compose.yml): an HTTP server whose requests burn CPU inside
// OpenTelemetry spans, plus a built-in load loop calling it, so the pipeline has spans to join.
//
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 node app.js   # then: curl :8080/checkout
//
// Every request is a local root span (kind SERVER; no incoming trace context), with child spans
// `price` (recursive fib, deep stacks) and `render` (string work). The Collector marks the root
// with pyroscope.profile.id, so Grafana opens a span's samples from the trace view.
// Configuration is the standard OTEL_* environment (service name, endpoint, resource attributes).

const { NodeSDK } = require('@opentelemetry/sdk-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { envDetector, hostDetector, processDetector } = require('@opentelemetry/resources');
const { containerDetector } = require('@opentelemetry/resource-detector-container');

const sdk = new NodeSDK({
  traceExporter: new OTLPTraceExporter(),
  // container.id lets the span router find this process in flamestream.processes.v1 (the agent
  // publishes each sampled process's container id and namespace pid = process.pid here).
  resourceDetectors: [envDetector, hostDetector, processDetector, containerDetector],
});
sdk.start();

const http = require('node:http');
const api = require('@opentelemetry/api');

const tracer = api.trace.getTracer('flamestream-demo', '0.1.0');
const port = Number(process.env.PORT || 8080);
const loadPerSecond = Number(process.env.DEMO_REQUESTS_PER_SECOND || 5);

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

function price(items) {
  return tracer.startActiveSpan('price', (span) => {
    try {
      let total = 0;
      for (let i = 0; i < items; i++) total += fib(22 + (i % 4));
      span.setAttribute('demo.items', items);
      return total;
    } finally {
      span.end();
    }
  });
}

function render(total) {
  return tracer.startActiveSpan('render', (span) => {
    try {
      let page = '';
      for (let i = 0; i < 2000; i++) page += `<li>${(total * i).toString(36)}</li>`;
      return JSON.stringify({ total, bytes: page.length });
    } finally {
      span.end();
    }
  });
}

function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const route = url.pathname === '/checkout' ? 'checkout' : url.pathname === '/healthz' ? null : 'index';
  if (route === null) {
    res.writeHead(200).end('ok\n');
    return;
  }
  tracer.startActiveSpan(`GET /${route}`, { kind: api.SpanKind.SERVER }, (span) => {
    try {
      span.setAttribute('http.request.method', req.method);
      span.setAttribute('url.path', url.pathname);
      const body = route === 'checkout' ? render(price(8)) : render(price(1));
      res.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n');
      span.setAttribute('http.response.status_code', 200);
    } catch (err) {
      span.recordException(err);
      span.setStatus({ code: api.SpanStatusCode.ERROR });
      res.writeHead(500).end();
    } finally {
      span.end();
    }
  });
}

const server = http.createServer(handle);
server.listen(port, () => console.log(`flamestream-demo listening on :${port}`));

let load = null;
if (loadPerSecond > 0) {
  load = setInterval(() => {
    const path = Math.random() < 0.7 ? '/checkout' : '/';
    fetch(`http://127.0.0.1:${port}${path}`).then((r) => r.text()).catch(() => {});
  }, Math.max(1, Math.floor(1000 / loadPerSecond)));
}

function shutdown() {
  if (load) clearInterval(load);
  server.close();
  sdk.shutdown().finally(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
