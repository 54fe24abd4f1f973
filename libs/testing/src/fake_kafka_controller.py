#!/usr/bin/env python3
"""A single-node Kafka-protocol server for testing kafka::Admin and `flamestream topics`.

No real Kafka can run on the test machine, and the dev broker (librdkafka's mock cluster) has
no controller and implements neither CreateTopics nor DescribeConfigs. This server speaks just
enough of the Kafka wire protocol for librdkafka's Admin API and Metadata:

  ApiVersions (18) v0-v3, Metadata (3) v0-v1, CreateTopics (19) v0-v2, DescribeConfigs (32) v0-v1

It advertises only those (non-flexible, except ApiVersions v3) versions so librdkafka uses the
classic encodings. Every request is decoded completely and validated like a broker would:
topic names, partition counts, replication factors (at most --brokers), known config names and
their values; a malformed request (bad lengths, trailing bytes, an unadvertised API or version)
closes the connection and is logged, it is never answered with success. Each decoded
CreateTopics and DescribeConfigs request is appended as one JSON line to --record, so a test
can assert exactly what the client sent.

  fake_kafka_controller.py --record /tmp/req.jsonl --brokers 3 \
      --topic flamestream.processes.v1:8:3:cleanup.policy=delete \
      --deny-describe-configs otlp_spans
  -> prints "listening <port>" on stdout once it accepts connections on 127.0.0.1:<port>.

Field layouts follow the Kafka protocol reference (the message JSON schemas of apache/kafka).
"""

import argparse
import json
import re
import socket
import socketserver
import struct
import sys
import threading

API_METADATA = 3
API_CREATE_TOPICS = 19
API_API_VERSIONS = 18
API_DESCRIBE_CONFIGS = 32

# api key -> (min version, max version) advertised in ApiVersions.
SUPPORTED = {
    API_METADATA: (0, 1),
    API_API_VERSIONS: (0, 3),
    API_CREATE_TOPICS: (0, 2),
    API_DESCRIBE_CONFIGS: (0, 1),
}
API_NAMES = {
    API_METADATA: "Metadata",
    API_API_VERSIONS: "ApiVersions",
    API_CREATE_TOPICS: "CreateTopics",
    API_DESCRIBE_CONFIGS: "DescribeConfigs",
}

# Error codes (Kafka protocol reference).
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_AUTHORIZATION_FAILED = 29
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
INVALID_REQUEST = 42

RESOURCE_TOPIC = 2
# DescribeConfigs config sources.
SOURCE_DYNAMIC_TOPIC_CONFIG = 1
SOURCE_DEFAULT_CONFIG = 5

NODE_ID = 1
TOPIC_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def valid_cleanup_policy(v):
    parts = v.split(",")
    return len(parts) >= 1 and all(p in ("delete", "compact") for p in parts) and len(
        set(parts)) == len(parts)


def valid_long(v, minimum):
    try:
        return int(v) >= minimum
    except ValueError:
        return False


# The topic configs this broker knows, with a broker default and a validator each. Unknown names
# are rejected with INVALID_CONFIG, as a real broker does.
TOPIC_CONFIGS = {
    "cleanup.policy": ("delete", valid_cleanup_policy),
    "retention.ms": ("604800000", lambda v: valid_long(v, -1)),
    "retention.bytes": ("-1", lambda v: valid_long(v, -1)),
    "segment.bytes": ("1073741824", lambda v: valid_long(v, 14)),
    "min.insync.replicas": ("1", lambda v: valid_long(v, 1)),
    "compression.type": ("producer", lambda v: v in (
        "uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")),
}


class ProtocolError(Exception):
    pass


class Reader:
    """Decodes Kafka primitive types from a request body; every read is bounds-checked."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError(f"need {n} bytes at offset {self.pos}, have {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int8(self):
        return struct.unpack(">b", self.take(1))[0]

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def boolean(self):
        b = self.take(1)[0]
        if b not in (0, 1):
            raise ProtocolError(f"boolean byte {b}")
        return b == 1

    def uvarint(self):
        shift = 0
        value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise ProtocolError("unsigned varint too long")

    def nullable_string(self):
        n = self.int16()
        if n == -1:
            return None
        if n < -1:
            raise ProtocolError(f"string length {n}")
        return self.take(n).decode("utf-8")

    def string(self):
        s = self.nullable_string()
        if s is None:
            raise ProtocolError("null in a non-nullable string")
        return s

    def compact_nullable_string(self):
        n = self.uvarint()
        if n == 0:
            return None
        return self.take(n - 1).decode("utf-8")

    def nullable_array(self, item):
        n = self.int32()
        if n == -1:
            return None
        if n < -1:
            raise ProtocolError(f"array length {n}")
        return [item() for _ in range(n)]

    def array(self, item):
        a = self.nullable_array(item)
        if a is None:
            raise ProtocolError("null in a non-nullable array")
        return a

    def tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())

    def done(self):
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} trailing bytes")


class Writer:
    def __init__(self):
        self.parts = []

    def int8(self, v):
        self.parts.append(struct.pack(">b", v))

    def int16(self, v):
        self.parts.append(struct.pack(">h", v))

    def int32(self, v):
        self.parts.append(struct.pack(">i", v))

    def boolean(self, v):
        self.parts.append(b"\x01" if v else b"\x00")

    def uvarint(self, v):
        out = bytearray()
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
        self.parts.append(bytes(out))

    def nullable_string(self, s):
        if s is None:
            self.int16(-1)
            return
        b = s.encode("utf-8")
        self.int16(len(b))
        self.parts.append(b)

    string = nullable_string

    def array(self, items, write_item):
        self.int32(len(items))
        for it in items:
            write_item(it)

    def compact_array(self, items, write_item):
        self.uvarint(len(items) + 1)
        for it in items:
            write_item(it)

    def bytes(self):
        return b"".join(self.parts)


class Cluster:
    """Topics of the fake cluster: name -> {"partitions", "replication", "configs"}."""

    def __init__(self, brokers, record_path, deny_describe):
        self.brokers = brokers
        self.deny_describe = set(deny_describe)  # topics whose configs this "ACL" hides
        self.topics = {}
        self.lock = threading.Lock()
        self.record_path = record_path

    def record(self, entry):
        line = json.dumps(entry, sort_keys=True)
        with self.lock:
            if self.record_path:
                with open(self.record_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            else:
                print(line, flush=True)


def log(msg):
    print(f"fake_kafka_controller: {msg}", file=sys.stderr, flush=True)


# ---- ApiVersions ----------------------------------------------------------------------------

def api_versions(version, r):
    if version >= 3:
        r.compact_nullable_string()  # client_software_name
        r.compact_nullable_string()  # client_software_version
        r.tagged_fields()
    r.done()
    w = Writer()
    w.int16(NONE)
    keys = sorted(SUPPORTED.items())
    if version >= 3:
        def item(kv):
            w.int16(kv[0])
            w.int16(kv[1][0])
            w.int16(kv[1][1])
            w.uvarint(0)
        w.compact_array(keys, item)
        w.int32(0)  # throttle_time_ms
        w.uvarint(0)
    else:
        def item(kv):
            w.int16(kv[0])
            w.int16(kv[1][0])
            w.int16(kv[1][1])
        w.array(keys, item)
        if version >= 1:
            w.int32(0)
    return w.bytes()


# ---- Metadata -------------------------------------------------------------------------------

def metadata(cluster, server_port, version, r):
    requested = r.nullable_array(r.string)
    r.done()
    with cluster.lock:
        # v0: an empty list means every topic; v1+: null means every topic, empty none.
        if requested is None or (version == 0 and not requested):
            names = sorted(cluster.topics)
        else:
            names = requested
        topics = [(n, cluster.topics.get(n)) for n in names]
    w = Writer()

    def broker(_):
        w.int32(NODE_ID)
        w.string("127.0.0.1")
        w.int32(server_port)
        if version >= 1:
            w.nullable_string(None)  # rack

    w.array([NODE_ID], broker)
    if version >= 1:
        w.int32(NODE_ID)  # controller_id

    def topic(nt):
        name, t = nt
        w.int16(NONE if t is not None else UNKNOWN_TOPIC_OR_PARTITION)
        w.string(name)
        if version >= 1:
            w.boolean(False)  # is_internal
        replicas = list(range(1, t["replication"] + 1)) if t is not None else []

        def partition(p):
            w.int16(NONE)
            w.int32(p)
            w.int32(NODE_ID)  # leader
            w.array(replicas, w.int32)
            w.array(replicas, w.int32)  # isr

        w.array(list(range(t["partitions"])) if t is not None else [], partition)

    w.array(topics, topic)
    return w.bytes()


# ---- CreateTopics ---------------------------------------------------------------------------

def create_topics(cluster, version, r):
    def assignment():
        return {"partition_index": r.int32(), "broker_ids": r.array(r.int32)}

    def config():
        return [r.string(), r.nullable_string()]

    def creatable():
        return {
            "name": r.string(),
            "num_partitions": r.int32(),
            "replication_factor": r.int16(),
            "assignments": r.array(assignment),
            "configs": r.array(config),
        }

    topics = r.array(creatable)
    timeout_ms = r.int32()
    validate_only = r.boolean() if version >= 1 else False
    r.done()
    cluster.record({"api": "CreateTopics", "version": version, "topics": topics,
                    "timeout_ms": timeout_ms, "validate_only": validate_only})

    counts = {}
    for t in topics:
        counts[t["name"]] = counts.get(t["name"], 0) + 1
    results = []
    with cluster.lock:
        for t in topics:
            name = t["name"]
            err, msg = check_creatable(cluster, t, counts[name])
            if err == NONE and not validate_only:
                cluster.topics[name] = {
                    "partitions": t["num_partitions"],
                    "replication": t["replication_factor"],
                    "configs": {k: v for k, v in t["configs"]},
                }
            results.append((name, err, msg))
    w = Writer()
    if version >= 2:
        w.int32(0)  # throttle_time_ms

    def result(res):
        w.string(res[0])
        w.int16(res[1])
        if version >= 1:
            w.nullable_string(res[2])

    w.array(results, result)
    return w.bytes()


def check_creatable(cluster, t, count):
    """(error code, message) for one CreatableTopic; cluster.lock is held."""
    name = t["name"]
    if count > 1:
        return INVALID_REQUEST, f"Create topics request from client contains a duplicate topic {name}"
    if not TOPIC_NAME_RE.match(name) or name in (".", ".."):
        return INVALID_TOPIC_EXCEPTION, f"Topic name '{name}' is illegal"
    if name in cluster.topics:
        return TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
    if t["assignments"]:
        # Flamestream never assigns replicas by hand; a broker would accept them, this fake
        # does not model them.
        return INVALID_REQUEST, "manual replica assignments are not supported by this fake"
    if t["num_partitions"] < 1:
        return INVALID_PARTITIONS, "Number of partitions must be larger than 0."
    if t["replication_factor"] < 1:
        return INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0."
    if t["replication_factor"] > cluster.brokers:
        return INVALID_REPLICATION_FACTOR, (
            f"Replication factor: {t['replication_factor']} larger than available brokers: "
            f"{cluster.brokers}.")
    seen = set()
    for key, value in t["configs"]:
        if key in seen:
            return INVALID_CONFIG, f"Duplicate config {key}"
        seen.add(key)
        if key not in TOPIC_CONFIGS:
            return INVALID_CONFIG, f"Unknown topic config name: {key}"
        if value is None or not TOPIC_CONFIGS[key][1](value):
            return INVALID_CONFIG, f"Invalid value {value} for configuration {key}"
    return NONE, None


# ---- DescribeConfigs ------------------------------------------------------------------------

def describe_configs(cluster, version, r):
    def resource():
        return {
            "resource_type": r.int8(),
            "resource_name": r.string(),
            "configuration_keys": r.nullable_array(r.string),
        }

    resources = r.array(resource)
    include_synonyms = r.boolean() if version >= 1 else False
    r.done()
    cluster.record({"api": "DescribeConfigs", "version": version, "resources": resources,
                    "include_synonyms": include_synonyms})
    w = Writer()
    w.int32(0)  # throttle_time_ms
    results = []
    with cluster.lock:
        for res in resources:
            name = res["resource_name"]
            if res["resource_type"] != RESOURCE_TOPIC:
                results.append((INVALID_REQUEST, "this fake describes topics only", res, []))
                continue
            t = cluster.topics.get(name)
            if name in cluster.deny_describe:
                # As a broker whose ACLs deny DescribeConfigs on the topic (no message).
                results.append((TOPIC_AUTHORIZATION_FAILED, None, res, []))
                continue
            if t is None:
                results.append((UNKNOWN_TOPIC_OR_PARTITION,
                                f"Topic '{name}' does not exist.", res, []))
                continue
            entries = []
            for key in sorted(TOPIC_CONFIGS):
                keys = res["configuration_keys"]
                if keys is not None and key not in keys:
                    continue
                if key in t["configs"]:
                    entries.append((key, t["configs"][key], SOURCE_DYNAMIC_TOPIC_CONFIG))
                else:
                    entries.append((key, TOPIC_CONFIGS[key][0], SOURCE_DEFAULT_CONFIG))
            results.append((NONE, None, res, entries))

    def entry(e):
        key, value, source = e
        w.string(key)
        w.nullable_string(value)
        w.boolean(False)  # read_only
        if version == 0:
            w.boolean(source == SOURCE_DEFAULT_CONFIG)  # is_default
        else:
            w.int8(source)
        w.boolean(False)  # is_sensitive
        if version >= 1:
            synonyms = [e] if include_synonyms else []

            def synonym(s):
                w.string(s[0])
                w.nullable_string(s[1])
                w.int8(s[2])

            w.array(synonyms, synonym)

    def result(res):
        err, msg, req, entries = res
        w.int16(err)
        w.nullable_string(msg)
        w.int8(req["resource_type"])
        w.string(req["resource_name"])
        w.array(entries, entry)

    w.array(results, result)
    return w.bytes()


# ---- Server ---------------------------------------------------------------------------------

def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf.extend(chunk)
    return bytes(buf)


def request_is_flexible(api_key, version):
    # Of what we advertise only ApiVersions v3 is flexible (request header v2).
    return api_key == API_API_VERSIONS and version >= 3


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        peer = "%s:%d" % self.client_address
        cluster = self.server.cluster
        port = self.server.server_address[1]
        while True:
            head = recv_exact(sock, 4)
            if head is None:
                return
            size = struct.unpack(">i", head)[0]
            if size < 8 or size > 100 * 1024 * 1024:
                log(f"{peer}: bad frame size {size}; closing")
                return
            frame = recv_exact(sock, size)
            if frame is None:
                log(f"{peer}: connection closed mid-frame")
                return
            r = Reader(frame)
            try:
                api_key = r.int16()
                version = r.int16()
                correlation_id = r.int32()
                client_id = r.nullable_string()
                name = API_NAMES.get(api_key, f"api {api_key}")
                log(f"{peer}: {name} v{version} correlation {correlation_id} "
                    f"client {client_id!r}")
                lo_hi = SUPPORTED.get(api_key)
                if lo_hi is None or not lo_hi[0] <= version <= lo_hi[1]:
                    if api_key == API_API_VERSIONS:
                        # A client newer than us: answer v0 with UNSUPPORTED_VERSION and our
                        # versions, as brokers do, so it can retry with one we speak.
                        w = Writer()
                        w.int16(UNSUPPORTED_VERSION)
                        w.array(sorted(SUPPORTED.items()),
                                lambda kv: (w.int16(kv[0]), w.int16(kv[1][0]), w.int16(kv[1][1])))
                        self.send(sock, correlation_id, w.bytes())
                        continue
                    log(f"{peer}: {name} v{version} was not advertised; closing")
                    return
                if request_is_flexible(api_key, version):
                    r.tagged_fields()
                if api_key == API_API_VERSIONS:
                    body = api_versions(version, r)
                elif api_key == API_METADATA:
                    body = metadata(cluster, port, version, r)
                elif api_key == API_CREATE_TOPICS:
                    body = create_topics(cluster, version, r)
                else:
                    body = describe_configs(cluster, version, r)
            except (ProtocolError, UnicodeDecodeError) as e:
                log(f"{peer}: malformed request: {e}; closing")
                return
            # Response header v0 (correlation id only): no flexible response is ever sent but
            # ApiVersions', whose header is v0 regardless.
            self.send(sock, correlation_id, body)

    @staticmethod
    def send(sock, correlation_id, body):
        payload = struct.pack(">i", correlation_id) + body
        sock.sendall(struct.pack(">i", len(payload)) + payload)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def parse_topic(spec, brokers):
    """NAME:PARTITIONS:REPLICATION[:KEY=VALUE,KEY=VALUE...]"""
    parts = spec.split(":", 3)
    if len(parts) < 3:
        raise argparse.ArgumentTypeError(f"--topic {spec}: expected NAME:PARTITIONS:REPLICATION"
                                         "[:KEY=VALUE,...]")
    name, partitions, replication = parts[0], int(parts[1]), int(parts[2])
    configs = {}
    if len(parts) == 4 and parts[3]:
        for kv in parts[3].split(","):
            k, sep, v = kv.partition("=")
            if not sep or k not in TOPIC_CONFIGS or not TOPIC_CONFIGS[k][1](v):
                raise argparse.ArgumentTypeError(f"--topic {spec}: bad config {kv}")
            configs[k] = v
    if partitions < 1 or not 1 <= replication <= brokers:
        raise argparse.ArgumentTypeError(f"--topic {spec}: bad partitions or replication")
    return name, {"partitions": partitions, "replication": replication, "configs": configs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    ap.add_argument("--brokers", type=int, default=3,
                    help="brokers the cluster claims to have: the largest replication factor "
                         "CreateTopics accepts")
    ap.add_argument("--topic", action="append", default=[],
                    help="pre-create NAME:PARTITIONS:REPLICATION[:KEY=VALUE,...] (repeatable)")
    ap.add_argument("--deny-describe-configs", action="append", default=[], metavar="TOPIC",
                    help="answer DescribeConfigs for TOPIC with TOPIC_AUTHORIZATION_FAILED "
                         "(repeatable)")
    ap.add_argument("--record", help="append each CreateTopics/DescribeConfigs request as a "
                                     "JSON line to this file (default: stdout)")
    args = ap.parse_args()
    cluster = Cluster(args.brokers, args.record, args.deny_describe_configs)
    for spec in args.topic:
        try:
            name, t = parse_topic(spec, args.brokers)
        except (argparse.ArgumentTypeError, ValueError) as e:
            ap.error(str(e))
        cluster.topics[name] = t
    server = Server(("127.0.0.1", args.port), Handler)
    server.cluster = cluster
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
