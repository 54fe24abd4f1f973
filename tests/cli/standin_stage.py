#!/usr/bin/env python3
"""A stand-in for a Flamestream service in supervisor tests.

Named by the symlink it is started through (flamestream-agent, ...). It serves /readyz and
/metrics on --admin-listen like the real services, appends "start <name>" and, on SIGTERM,
"stop <name>" to $FS_STANDIN_LOG, and exits 0. $FS_STANDIN_CRASH_ONCE=<name> makes that stage
exit 3 a second after its first start (a marker file next to the log remembers it crashed).
"""
import http.server
import os
import signal
import sys
import threading
import time

name = os.path.basename(sys.argv[0]).removeprefix("flamestream-")
log = os.environ.get("FS_STANDIN_LOG", "")


def record(line):
    if log:
        with open(log, "a") as f:
            f.write(line + "\n")


admin = None
args = sys.argv[1:]
for i, a in enumerate(args):
    if a == "--admin-listen" and i + 1 < len(args):
        admin = args[i + 1]
record("start " + name + " " + " ".join(args))

started = time.time()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/readyz":
            body = b"ready\n"
        elif self.path == "/metrics":
            # Input grows for a second, then stops (as when upstream has drained).
            n = int(min(time.time() - started, 1.0) * 100)
            body = ("fs_records_in_total{stage=\"%s\"} %d\nfs_agent_samples_total %d\n"
                    "fs_consumer_lag{partition=\"0\"} 0\n" % (name, n, n)).encode()
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


server = None
if admin:
    host, port = admin.rsplit(":", 1)
    server = http.server.HTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

if os.environ.get("FS_STANDIN_CRASH_ONCE") == name and log:
    marker = log + "." + name + ".crashed"
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(1.0)  # after it was found ready: a crash of a running stage
        record("crash " + name)
        os._exit(3)

done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
signal.signal(signal.SIGINT, lambda *a: record("sigint " + name))
while not done.wait(0.05):
    pass
record("stop " + name)
if server:
    server.server_close()
sys.exit(0)
