#!/usr/bin/env python3
"""Semantic checks of Flamestream's deployment artifacts (run by scripts/check-deploy.sh).

    check_manifests.py --root . --compose compose.yaml --compose-topics topics.txt \
        --render base=base.yaml --render eu-west=eu-west.yaml [--bin-dir build/bin]

Checks, on `kubectl kustomize` output: YAML parses into named objects, no duplicates; every
ConfigMap, Secret and ServiceAccount a pod references exists (ConfigMap keys too); workload
selectors match their pod template labels; Services and PodDisruptionBudgets select existing
pods and Service target ports exist; probes point at declared ports; volume mounts name
volumes; KEDA ScaledObjects target existing workloads, read brokers the target really has and
watch declared topics; KafkaTopics are valid, match topics.h, and samples and keyed spans share
one partition count; MirrorMaker 2 keeps topic names (IdentityReplicationPolicy). On the
docker-compose render: scalable stages publish no host ports, the agent has its named capabilities in the
host pid namespace, topics created by deploy/kafka/create-topics.sh match topics.h, the
Collector writes otlp_spans as otlp_proto and sets pyroscope.profile.id, Grafana links traces to
profiles, build targets exist in the Dockerfile and only the agent image runs as root. With
--bin-dir, config keys in deploy files are compared with each service's --help.

Exit status 1 if any check fails; every problem is printed as "<where>: <what>".
"""

import argparse
import os
import re
import subprocess
import sys

import yaml

POD_TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"}
SCALABLE_STAGES = ("symbolizer", "correlator", "exporter")
SERVICES = ("agent", "symbolizer", "correlator", "exporter")


class Report:
    def __init__(self):
        self.errors = []
        self.warnings = []

    def error(self, where, what):
        self.errors.append(f"{where}: {what}")

    def warn(self, where, what):
        self.warnings.append(f"{where}: {what}")


# ------------------------------------------------------------------------------------------
# Topic names, from the C++ header that services use (the source of truth).

def expected_topics(header_path):
    text = open(header_path, encoding="utf-8").read()
    consts = dict(re.findall(r'inline constexpr std::string_view (k\w+) = "([^"]+)"', text))
    try:
        pipeline = [consts[k] for k in ("kSamplesRaw", "kProcesses", "kSamplesSymbolized",
                                        "kSpansKeyed", "kSamplesCorrelated", "kOtlpSpans")]
        replay, dlq = consts["kReplaySuffix"], consts["kDlqSuffix"]
    except KeyError as missing:
        raise SystemExit(f"{header_path}: constant {missing} not found; update check_manifests.py")
    # topics.h: Pipeline() = the pipeline topics plus replay variants of symbolized and
    # correlated; All() = Pipeline() and each one's DLQ.
    pipeline += [consts["kSamplesSymbolized"] + replay, consts["kSamplesCorrelated"] + replay]
    names = set(pipeline) | {t + dlq for t in pipeline}
    return {
        "all": names,
        "dlq": dlq,
        "raw": consts["kSamplesRaw"],
        "processes": consts["kProcesses"],
        "spans_keyed": consts["kSpansKeyed"],
        "otlp_spans": consts["kOtlpSpans"],
        "symbolized": consts["kSamplesSymbolized"],
        "correlated": consts["kSamplesCorrelated"],
    }


def is_keyed(topic, topics):
    """Topics keyed by <cluster>/<node> that must share one partition count."""
    if topic.endswith(topics["dlq"]):
        return False
    return topic.startswith("flamestream.samples.") or topic.startswith(topics["spans_keyed"])


# ------------------------------------------------------------------------------------------
# Kubernetes renders.

def load_render(report, name, path):
    where = f"{name}"
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        report.error(where, f"YAML does not parse: {e}")
        return []
    objects = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            report.error(where, f"document {i} is not a mapping")
            continue
        missing = [k for k in ("apiVersion", "kind") if not d.get(k)]
        if missing or not (d.get("metadata") or {}).get("name"):
            report.error(where, f"document {i} lacks {missing or ['metadata.name']}")
            continue
        objects.append(d)
    return objects


def labels_match(selector_labels, labels):
    return all(labels.get(k) == v for k, v in (selector_labels or {}).items())


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels + matchExpressions) against a label set."""
    if not labels_match(selector.get("matchLabels"), labels):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_template(obj):
    if obj["kind"] in POD_TEMPLATE_KINDS:
        return (obj.get("spec") or {}).get("template")
    if obj["kind"] == "CronJob":
        return (((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template")
    return None


def container_ports(container):
    ports = container.get("ports") or []
    return {p.get("name") for p in ports if p.get("name")}, {p.get("containerPort") for p in ports}


def check_probe_port(report, where, probe_name, probe, names, numbers):
    if not probe:
        return
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            port = probe[handler].get("port")
            if isinstance(port, str) and not port.isdigit():
                if port not in names:
                    report.error(where, f"{probe_name} uses port name '{port}', not declared")
            elif int(port) not in numbers:
                report.error(where, f"{probe_name} uses port {port}, not a containerPort")


class Render:
    def __init__(self, report, name, objects):
        self.report, self.name, self.objects = report, name, objects
        self.by_key = {}
        for o in objects:
            key = (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
            if key in self.by_key:
                report.error(name, f"duplicate {key[0]} {key[2]} in namespace '{key[1]}'")
            self.by_key[key] = o
        self.configmaps, self.secrets, self.accounts = {}, {}, set()
        for (kind, ns, n), o in self.by_key.items():
            if kind == "ConfigMap":
                self.configmaps[(ns, n)] = set(o.get("data") or {}) | set(o.get("binaryData") or {})
            elif kind == "Secret":
                self.secrets[(ns, n)] = set(o.get("data") or {}) | set(o.get("stringData") or {})
            elif kind == "ServiceAccount":
                self.accounts.add((ns, n))
        self.pods = []  # (workload, namespace, labels, podspec)
        for o in objects:
            tpl = pod_template(o)
            if tpl is not None:
                self.pods.append((o, o["metadata"].get("namespace", ""),
                                  (tpl.get("metadata") or {}).get("labels") or {},
                                  tpl.get("spec") or {}))

    def where(self, o):
        return f"{self.name}: {o['kind']}/{o['metadata']['name']}"

    # References from a pod spec ---------------------------------------------------------
    def ref_configmap(self, where, ns, name, key=None, optional=False):
        if optional:
            return
        if (ns, name) not in self.configmaps:
            self.report.error(where, f"references ConfigMap '{name}', not in the render")
        elif key is not None and key not in self.configmaps[(ns, name)]:
            self.report.error(where, f"references key '{key}' of ConfigMap '{name}', which lacks it")

    def ref_secret(self, where, ns, name, key=None, optional=False):
        if optional:
            return
        if (ns, name) not in self.secrets:
            self.report.error(where, f"references Secret '{name}', not in the render")
        elif key is not None and key not in self.secrets[(ns, name)]:
            self.report.error(where, f"references key '{key}' of Secret '{name}', which lacks it")

    def check_workloads(self):
        for o, ns, labels, spec in self.pods:
            where = self.where(o)
            selector = (o.get("spec") or {}).get("selector")
            if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet"):
                if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
                    self.report.error(where, "has no selector")
                elif not selector_matches(selector, labels):
                    self.report.error(where, f"selector {selector} does not match template labels {labels}")
            if spec.get("enableServiceLinks", True) is not False:
                # Kubernetes would inject FLAMESTREAM_REDIS_SERVICE_HOST, ... for the
                # namespace's flamestream-* Services; the services ignore them, but they
                # are noise in every pod's environment and in every startup log.
                self.report.error(where, "does not set enableServiceLinks: false")
            sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
            if sa and sa != "default" and (ns, sa) not in self.accounts:
                self.report.error(where, f"uses ServiceAccount '{sa}', not in the render")
            for ips in spec.get("imagePullSecrets") or []:
                self.ref_secret(where, ns, ips.get("name"))
            volumes = {}
            for v in spec.get("volumes") or []:
                volumes[v.get("name")] = v
                if "configMap" in v:
                    cm = v["configMap"]
                    self.ref_configmap(where, ns, cm.get("name"), optional=cm.get("optional", False))
                    for item in cm.get("items") or []:
                        self.ref_configmap(where, ns, cm.get("name"), item.get("key"), cm.get("optional", False))
                if "secret" in v:
                    s = v["secret"]
                    self.ref_secret(where, ns, s.get("secretName"), optional=s.get("optional", False))
                for src in (v.get("projected") or {}).get("sources") or []:
                    if "configMap" in src:
                        self.ref_configmap(where, ns, src["configMap"].get("name"),
                                           optional=src["configMap"].get("optional", False))
                    if "secret" in src:
                        self.ref_secret(where, ns, src["secret"].get("name"),
                                        optional=src["secret"].get("optional", False))
            containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
            if not spec.get("containers"):
                self.report.error(where, "has no containers")
            for c in containers:
                cwhere = f"{where} container {c.get('name')}"
                if not c.get("image"):
                    self.report.error(cwhere, "has no image")
                names, numbers = container_ports(c)
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    check_probe_port(self.report, cwhere, probe, c.get(probe), names, numbers)
                for m in c.get("volumeMounts") or []:
                    if m.get("name") not in volumes:
                        self.report.error(cwhere, f"mounts volume '{m.get('name')}', not declared")
                for e in c.get("env") or []:
                    vf = e.get("valueFrom") or {}
                    if "configMapKeyRef" in vf:
                        r = vf["configMapKeyRef"]
                        self.ref_configmap(cwhere, ns, r.get("name"), r.get("key"), r.get("optional", False))
                    if "secretKeyRef" in vf:
                        r = vf["secretKeyRef"]
                        self.ref_secret(cwhere, ns, r.get("name"), r.get("key"), r.get("optional", False))
                for ef in c.get("envFrom") or []:
                    if "configMapRef" in ef:
                        r = ef["configMapRef"]
                        self.ref_configmap(cwhere, ns, r.get("name"), optional=r.get("optional", False))
                    if "secretRef" in ef:
                        r = ef["secretRef"]
                        self.ref_secret(cwhere, ns, r.get("name"), optional=r.get("optional", False))

    def pods_selected(self, ns, selector_labels=None, selector=None):
        out = []
        for o, pns, labels, spec in self.pods:
            if pns != ns:
                continue
            if selector is not None and selector_matches(selector, labels):
                out.append((o, labels, spec))
            elif selector_labels is not None and labels_match(selector_labels, labels):
                out.append((o, labels, spec))
        return out

    def check_services(self):
        for (kind, ns, name), o in self.by_key.items():
            if kind != "Service":
                continue
            where = self.where(o)
            spec = o.get("spec") or {}
            sel = spec.get("selector")
            if not sel:
                continue  # selector-less Services point at manual Endpoints
            pods = self.pods_selected(ns, selector_labels=sel)
            if not pods:
                self.report.error(where, f"selector {sel} matches no pod template")
                continue
            for p in spec.get("ports") or []:
                target = p.get("targetPort", p.get("port"))
                found = False
                for _, _, pspec in pods:
                    for c in pspec.get("containers") or []:
                        names, numbers = container_ports(c)
                        if (isinstance(target, str) and target in names) or target in numbers:
                            found = True
                if not found:
                    self.report.error(where, f"port {p.get('name') or p.get('port')} targets "
                                             f"'{target}', which no selected container declares")

    def check_pdbs(self):
        for (kind, ns, name), o in self.by_key.items():
            if kind != "PodDisruptionBudget":
                continue
            sel = (o.get("spec") or {}).get("selector")
            if not sel or not self.pods_selected(ns, selector=sel):
                self.report.error(self.where(o), f"selector {sel} matches no pod template")

    def env_names(self, ns, container):
        names = {e.get("name") for e in container.get("env") or []}
        for ef in container.get("envFrom") or []:
            ref = ef.get("configMapRef") or {}
            names |= self.configmaps.get((ns, ref.get("name")), set())
            ref = ef.get("secretRef") or {}
            names |= self.secrets.get((ns, ref.get("name")), set())
        return names

    def check_scaledobjects(self, topic_partitions):
        for (kind, ns, name), o in self.by_key.items():
            if kind != "ScaledObject":
                continue
            where = self.where(o)
            spec = o.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            target = self.by_key.get((ref.get("kind", "Deployment"), ns, ref.get("name")))
            if target is None:
                self.report.error(where, f"scaleTargetRef {ref} is not in the render")
                continue
            tpl = pod_template(target) or {}
            containers = (tpl.get("spec") or {}).get("containers") or []
            env = set()
            for c in containers:
                env |= self.env_names(ns, c)
            max_replicas = spec.get("maxReplicaCount", 100)
            for t in spec.get("triggers") or []:
                if t.get("type") != "kafka":
                    continue
                md = t.get("metadata") or {}
                if not md.get("bootstrapServers"):
                    from_env = md.get("bootstrapServersFromEnv")
                    if not from_env:
                        self.report.error(where, "kafka trigger has no bootstrapServers(FromEnv)")
                    elif from_env not in env:
                        self.report.error(where, f"bootstrapServersFromEnv '{from_env}' is not in the "
                                                 f"environment of {target['kind']}/{ref.get('name')}")
                if not md.get("consumerGroup"):
                    self.report.error(where, "kafka trigger has no consumerGroup")
                topic = md.get("topic")
                if topic_partitions:
                    if topic not in topic_partitions:
                        self.report.error(where, f"kafka trigger watches topic '{topic}', no KafkaTopic declares it")
                    elif max_replicas > topic_partitions[topic]:
                        self.report.error(where, f"maxReplicaCount {max_replicas} exceeds the "
                                                 f"{topic_partitions[topic]} partitions of {topic}")

    def check_topics(self, topics):
        """Returns {topicName: partitions}."""
        parts, clusters = {}, set()
        for (kind, ns, name), o in self.by_key.items():
            if kind != "KafkaTopic":
                continue
            where = self.where(o)
            spec = o.get("spec") or {}
            tname = spec.get("topicName") or name
            clusters.add(((o["metadata"].get("labels") or {}).get("strimzi.io/cluster")))
            p, r = spec.get("partitions"), spec.get("replicas")
            if not isinstance(p, int) or p <= 0:
                self.report.error(where, f"partitions must be a positive integer, got {p!r}")
                continue
            if not isinstance(r, int) or r <= 0:
                self.report.error(where, f"replicas must be a positive integer, got {r!r}")
            if tname in parts:
                self.report.error(where, f"topic {tname} declared twice")
            parts[tname] = p
            if tname not in topics["all"]:
                self.report.error(where, f"topic {tname} is not a Flamestream topic (topics.h)")
            cfg = spec.get("config") or {}
            if tname == topics["processes"]:
                if cfg.get("cleanup.policy") != "compact":
                    self.report.error(where, f"{tname} must be compacted (cleanup.policy: compact)")
            elif "retention.ms" not in cfg:
                self.report.error(where, f"{tname} has no retention.ms")
        if not parts:
            return parts
        if None in clusters or len(clusters) != 1:
            self.report.error(self.name, f"KafkaTopics must all carry one strimzi.io/cluster label, got {clusters}")
        keyed = {t: p for t, p in parts.items() if is_keyed(t, topics)}
        if len(set(keyed.values())) > 1:
            self.report.error(self.name, f"samples and keyed spans must have one partition count: {keyed}")
        if topics["spans_keyed"] in parts:  # a render with the stages' topics: all of them
            missing = topics["all"] - set(parts)
            if missing:
                self.report.error(self.name, f"KafkaTopics missing: {sorted(missing)}")
            raw = self.topic_retention(topics["raw"])
            spans = self.topic_retention(topics["spans_keyed"])
            if raw is not None and spans is not None and spans < raw:
                self.report.error(self.name, f"{topics['spans_keyed']} retention {spans} ms is shorter than "
                                             f"raw samples' {raw} ms: a replay could not re-join spans")
        return parts

    def topic_retention(self, tname):
        for (kind, _, name), o in self.by_key.items():
            if kind == "KafkaTopic" and ((o.get("spec") or {}).get("topicName") or name) == tname:
                v = ((o.get("spec") or {}).get("config") or {}).get("retention.ms")
                return int(v) if v is not None else None
        return None

    def check_mirrormaker(self, topics, topic_partitions):
        for (kind, ns, name), o in self.by_key.items():
            if kind != "KafkaMirrorMaker2":
                continue
            where = self.where(o)
            spec = o.get("spec") or {}
            external = {s.strip() for s in ((o["metadata"].get("annotations") or {})
                                            .get("flamestream.io/external-secrets", "")).split(",") if s.strip()}
            for secret in find_secret_names(spec):
                if (ns, secret) not in self.secrets and secret not in external:
                    self.report.error(where, f"references Secret '{secret}', neither in the render "
                                             f"nor listed in flamestream.io/external-secrets")
            aliases = {c.get("alias") for c in spec.get("clusters") or []}
            if spec.get("connectCluster") not in aliases:
                self.report.error(where, f"connectCluster '{spec.get('connectCluster')}' is not a cluster alias")
            for m in spec.get("mirrors") or []:
                for side in ("sourceCluster", "targetCluster"):
                    if m.get(side) not in aliases:
                        self.report.error(where, f"mirror {side} '{m.get(side)}' is not a cluster alias")
                policy = (((m.get("sourceConnector") or {}).get("config") or {})
                          .get("replication.policy.class", ""))
                if not policy.endswith("IdentityReplicationPolicy"):
                    self.report.error(where, f"mirror {m.get('sourceCluster')}: replication.policy.class must be "
                                             f"IdentityReplicationPolicy so topic names stay the same")
                pattern = m.get("topicsPattern") or ""
                mirrored = {t for t in topics["all"] if re.fullmatch(pattern, t)}
                for t in (topics["raw"], topics["processes"], topics["otlp_spans"]):
                    if t not in mirrored:
                        self.report.error(where, f"mirror {m.get('sourceCluster')} does not copy {t}")
                for t in mirrored:
                    if t not in topic_partitions:
                        self.report.error(where, f"mirrored topic {t} has no KafkaTopic on the target")


def find_secret_names(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "secretName" and isinstance(v, str):
                yield v
            else:
                yield from find_secret_names(v)
    elif isinstance(node, list):
        for v in node:
            yield from find_secret_names(v)


# ------------------------------------------------------------------------------------------
# docker-compose, Collector, Grafana, Dockerfile.

def dockerfile_stages(path):
    """{stage: [instructions]} of a Dockerfile (continuations joined)."""
    stages, current = {}, None
    text = open(path, encoding="utf-8").read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            current = (m.group(1) or f"stage{len(stages)}").lower()
            if current in stages:
                raise SystemExit(f"{path}: stage {current} defined twice")
            stages[current] = []
            continue
        if current is not None:
            stages[current].append(line)
    return stages


def check_dockerfile(report, root):
    path = os.path.join(root, "Dockerfile")
    stages = dockerfile_stages(path)
    for stage, lines in stages.items():
        if not any(l.upper().startswith("ENTRYPOINT") for l in lines):
            continue  # build-only stages
        users = [l.split(None, 1)[1].strip() for l in lines if l.upper().startswith("USER ")]
        user = users[-1] if users else "root"
        is_root = user.split(":")[0] in ("root", "0")
        if stage == "agent" and not is_root:
            report.error(f"Dockerfile stage {stage}", "the agent must run as root (eBPF)")
        if stage != "agent" and is_root:
            report.error(f"Dockerfile stage {stage}", f"runs as root (USER {user}); only the agent may")
    for svc in SERVICES:
        if svc not in stages:
            report.error("Dockerfile", f"no '{svc}' target")
    return stages


def check_compose(report, root, compose_path, topics_file, topics, stages):
    where = "docker-compose.yml"
    compose = yaml.safe_load(open(compose_path, encoding="utf-8"))
    services = compose.get("services") or {}
    for svc in SERVICES:
        if svc not in services:
            report.error(where, f"no service '{svc}'")
    for name, s in services.items():
        build = s.get("build") or {}
        ctx = build.get("context", "") if isinstance(build, dict) else build
        target = build.get("target") if isinstance(build, dict) else None
        if target and os.path.realpath(ctx) == os.path.realpath(root) and target not in stages:
            report.error(f"{where} service {name}", f"build target '{target}' is not a Dockerfile stage")
        for v in s.get("volumes") or []:
            src = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            vtype = v.get("type") if isinstance(v, dict) else ("bind" if src.startswith(("/", ".")) else "volume")
            if vtype == "bind" and src.startswith(os.path.realpath(root)) and not os.path.exists(src):
                report.error(f"{where} service {name}", f"bind-mounts {src}, which does not exist")
    for svc in SCALABLE_STAGES:
        s = services.get(svc) or {}
        if s.get("container_name"):
            report.error(f"{where} service {svc}", "sets container_name, so --scale cannot work")
        if s.get("ports"):
            report.error(f"{where} service {svc}", "publishes host ports, so --scale would clash")
        if "topic-init" not in (s.get("depends_on") or {}):
            report.error(f"{where} service {svc}", "does not wait for topic-init")
    agent = services.get("agent") or {}
    agent_caps = {"BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE", "SYSLOG", "DAC_READ_SEARCH"}
    if agent.get("privileged"):
        report.error(f"{where} service agent", "is privileged; grant the named capabilities")
    if set(agent.get("cap_add") or []) != agent_caps:
        report.error(f"{where} service agent", f"cap_add must be exactly {sorted(agent_caps)}")
    if agent.get("pid") != "host":
        report.error(f"{where} service agent", "must use pid: host")
    targets = {(v.get("target") if isinstance(v, dict) else str(v).split(":")[1]) for v in agent.get("volumes") or []}
    for needed in ("/sys/kernel/debug", "/sys/fs/bpf"):
        if needed not in targets:
            report.error(f"{where} service agent", f"does not mount {needed}")

    # Topics as deploy/kafka/create-topics.sh creates them (recorded through a stub CLI).
    created = {}
    for line in open(topics_file, encoding="utf-8"):
        name, parts, configs = line.rstrip("\n").split("|", 2)
        created[name] = (int(parts), configs)
    if set(created) != topics["all"]:
        report.error("deploy/kafka/create-topics.sh",
                     f"topics differ from topics.h: missing {sorted(topics['all'] - set(created))}, "
                     f"extra {sorted(set(created) - topics['all'])}")
    keyed = {t: p for t, (p, _) in created.items() if is_keyed(t, topics)}
    if len(set(keyed.values())) > 1:
        report.error("deploy/kafka/create-topics.sh", f"keyed topics differ in partitions: {keyed}")
    if "cleanup.policy=compact" not in created.get(topics["processes"], (0, ""))[1]:
        report.error("deploy/kafka/create-topics.sh", f"{topics['processes']} is not compacted")


def check_collector(report, root):
    where = "deploy/otel-collector/config.yaml"
    cfg = yaml.safe_load(open(os.path.join(root, where), encoding="utf-8"))
    exporters = cfg.get("exporters") or {}
    kafka = [v for k, v in exporters.items() if k.split("/")[0] == "kafka"]
    if not kafka:
        report.error(where, "no kafka exporter")
    for k in kafka:
        if k.get("topic") != "otlp_spans" or k.get("encoding") != "otlp_proto":
            report.error(where, "kafka exporter must write topic otlp_spans with encoding otlp_proto")
    transforms = [v for k, v in (cfg.get("processors") or {}).items() if k.split("/")[0] == "transform"]
    if "pyroscope.profile.id" not in yaml.safe_dump(transforms):
        report.error(where, "no transform sets pyroscope.profile.id")
    pipeline = ((cfg.get("service") or {}).get("pipelines") or {}).get("traces") or {}
    defined = set(cfg.get("receivers") or {}) | set(cfg.get("processors") or {}) | set(exporters)
    for part in ("receivers", "processors", "exporters"):
        for comp in pipeline.get(part) or []:
            if comp not in defined:
                report.error(where, f"traces pipeline uses undefined {part[:-1]} {comp}")
    if not any(p.split("/")[0] == "transform" for p in pipeline.get("processors") or []):
        report.error(where, "traces pipeline does not run the transform processor")
    if not any(e.split("/")[0] == "kafka" for e in pipeline.get("exporters") or []):
        report.error(where, "traces pipeline does not export to kafka")


def check_grafana(report, root):
    where = "deploy/grafana/provisioning/datasources/datasources.yaml"
    cfg = yaml.safe_load(open(os.path.join(root, where), encoding="utf-8"))
    sources = {d.get("uid"): d for d in cfg.get("datasources") or []}
    tempo = [d for d in sources.values() if d.get("type") == "tempo"]
    if not tempo:
        report.error(where, "no Tempo data source")
    for t in tempo:
        link = (t.get("jsonData") or {}).get("tracesToProfiles") or {}
        target = sources.get(link.get("datasourceUid"))
        if not target or target.get("type") != "grafana-pyroscope-datasource":
            report.error(where, "Tempo's tracesToProfiles must name the Pyroscope data source uid")


# ------------------------------------------------------------------------------------------
# Config keys in deploy files against each service's --help.

def flatten(node, prefix=""):
    """Dotted keys of a YAML config, as libs/config flattens nested maps."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix


def declared_keys(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30).stdout
    section = out.split("Config keys", 1)[-1]
    return set(re.findall(r"^  (\S+)  \(", section, re.MULTILINE))


def key_declared(key, declared):
    return key in declared or any(d.endswith(".*") and key.startswith(d[:-1]) for d in declared)


def check_config_keys(report, root, bin_dir, renders, compose_path, strict):
    sources = {svc: [] for svc in SERVICES}  # svc -> [(where, key)]
    for svc in SERVICES:
        for rel in (f"deploy/config/{svc}.yaml", f"k8s/base/agent/config/{svc}.yaml",
                    f"k8s/base/pipeline/config/{svc}.yaml"):
            path = os.path.join(root, rel)
            if os.path.exists(path):
                doc = yaml.safe_load(open(path, encoding="utf-8")) or {}
                sources[svc] += [(rel, k) for k in flatten(doc)]
    # FLAMESTREAM_* variables each container gets (env and envFrom ConfigMaps).
    for rname, render in renders.items():
        for o, ns, _, spec in render.pods:
            for c in spec.get("containers") or []:
                svc = c.get("name")
                if svc in sources:
                    for var in render.env_names(ns, c):
                        if var.startswith("FLAMESTREAM_"):
                            sources[svc].append((f"{rname} {o['kind']}/{o['metadata']['name']}",
                                                 var[len("FLAMESTREAM_"):].lower().replace("__", ".")))
    compose = yaml.safe_load(open(compose_path, encoding="utf-8"))
    for svc in SERVICES:
        env = ((compose.get("services") or {}).get(svc) or {}).get("environment") or {}
        for var in env:
            if var.startswith("FLAMESTREAM_"):
                sources[svc].append(("docker-compose.yml", var[len("FLAMESTREAM_"):].lower().replace("__", ".")))
    for svc, uses in sources.items():
        binary = os.path.join(bin_dir, f"flamestream-{svc}")
        if not os.access(binary, os.X_OK):
            print(f"check-deploy: config keys of {svc}: skipped, {binary} not built")
            continue
        declared = declared_keys(binary)
        for where, key in sorted(set(uses)):
            if not key_declared(key, declared):
                msg = f"config key '{key}' is not declared by flamestream-{svc} (--help)"
                (report.error if strict else report.warn)(where, msg)


# ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--compose", required=True, help="output of docker-compose config")
    ap.add_argument("--compose-topics", required=True, help="name|partitions|configs per line")
    ap.add_argument("--render", action="append", default=[], help="NAME=FILE of kubectl kustomize output")
    ap.add_argument("--bin-dir", help="built services, to compare config keys with --help")
    ap.add_argument("--strict-keys", action="store_true", help="undeclared config keys are errors")
    args = ap.parse_args()

    report = Report()
    topics = expected_topics(os.path.join(args.root, "libs/kafka/include/flamestream/kafka/topics.h"))
    stages = check_dockerfile(report, args.root)
    check_compose(report, args.root, args.compose, args.compose_topics, topics, stages)
    check_collector(report, args.root)
    check_grafana(report, args.root)

    renders = {}
    for spec in args.render:
        name, path = spec.split("=", 1)
        render = Render(report, name, load_render(report, name, path))
        render.check_workloads()
        render.check_services()
        render.check_pdbs()
        partitions = render.check_topics(topics)
        render.check_scaledobjects(partitions)
        render.check_mirrormaker(topics, partitions)
        renders[name] = render
        print(f"check-deploy: {name}: {len(render.objects)} objects checked")

    if args.bin_dir:
        check_config_keys(report, args.root, args.bin_dir, renders, args.compose, args.strict_keys)

    for w in report.warnings:
        print(f"check-deploy: warning: {w}")
    for e in report.errors:
        print(f"check-deploy: ERROR: {e}", file=sys.stderr)
    if report.errors:
        print(f"check-deploy: {len(report.errors)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
