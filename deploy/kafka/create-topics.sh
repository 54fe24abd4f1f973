#!/usr/bin/env bash
# Creates every Flamestream topic on a Kafka cluster (idempotent: existing topics are checked,
# not changed). docker-compose.yml runs it once in the `topic-init` service; it works against
# any cluster from a machine with Kafka's CLI tools:
#
#   BOOTSTRAP=broker:9092 PARTITIONS=24 REPLICATION=3 deploy/kafka/create-topics.sh
#
# Topic names follow libs/kafka/include/flamestream/kafka/topics.h (scripts/check-deploy.sh
# compares them). Samples and keyed spans MUST have the same partition count (the correlator
# joins partition p of both and refuses to start otherwise), so every keyed topic gets
# PARTITIONS; the script fails if an existing keyed topic has another count.
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
PARTITIONS="${PARTITIONS:-12}"
REPLICATION="${REPLICATION:-1}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
# Retention. Raw samples and keyed spans are what a replay re-reads, so they keep the longest.
RAW_RETENTION_MS="${RAW_RETENTION_MS:-604800000}"         # 7 days: replay window
DERIVED_RETENTION_MS="${DERIVED_RETENTION_MS:-86400000}"  # 1 day: symbolized/correlated/otlp_spans
DLQ_RETENTION_MS="${DLQ_RETENTION_MS:-1209600000}"        # 14 days: time to fix and re-drive

topics_cmd() { "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "$@"; }

# name|partitions|config (comma separated key=value)
TOPICS=(
  "flamestream.samples.raw.v1|$PARTITIONS|retention.ms=$RAW_RETENTION_MS"
  "flamestream.processes.v1|$PARTITIONS|cleanup.policy=compact,min.compaction.lag.ms=60000"
  "flamestream.samples.symbolized.v1|$PARTITIONS|retention.ms=$DERIVED_RETENTION_MS"
  "flamestream.spans.keyed.v1|$PARTITIONS|retention.ms=$RAW_RETENTION_MS"
  "flamestream.samples.correlated.v1|$PARTITIONS|retention.ms=$DERIVED_RETENTION_MS"
  "otlp_spans|$PARTITIONS|retention.ms=$DERIVED_RETENTION_MS"
  "flamestream.samples.symbolized.v1.replay|$PARTITIONS|retention.ms=$DERIVED_RETENTION_MS"
  "flamestream.samples.correlated.v1.replay|$PARTITIONS|retention.ms=$DERIVED_RETENTION_MS"
)
# Each topic's dead-letter queue: few partitions, long retention.
for entry in "${TOPICS[@]}"; do
  TOPICS+=("${entry%%|*}.dlq|3|retention.ms=$DLQ_RETENTION_MS")
done
# Topics keyed by <cluster>/<node>: the correlator joins partition p of samples and keyed spans,
# and every samples topic keeps the same count so a node's data stays in one partition number.
KEYED=(flamestream.samples.raw.v1 flamestream.samples.symbolized.v1 flamestream.spans.keyed.v1
       flamestream.samples.correlated.v1 flamestream.samples.symbolized.v1.replay
       flamestream.samples.correlated.v1.replay)

echo "create-topics: waiting for $BOOTSTRAP"
for i in $(seq 1 60); do
  if topics_cmd --list >/dev/null 2>&1; then break; fi
  if [ "$i" -eq 60 ]; then echo "create-topics: $BOOTSTRAP unreachable" >&2; exit 1; fi
  sleep 2
done

for entry in "${TOPICS[@]}"; do
  IFS='|' read -r name parts configs <<<"$entry"
  args=()
  IFS=',' read -ra kvs <<<"$configs"
  for kv in "${kvs[@]}"; do args+=(--config "$kv"); done
  topics_cmd --create --if-not-exists --topic "$name" --partitions "$parts" \
    --replication-factor "$REPLICATION" "${args[@]}" >/dev/null
  echo "create-topics: $name ($parts partitions, $configs)"
done

# Verify co-partitioning on what the cluster actually holds (topics may have existed before).
status=0
for name in "${KEYED[@]}"; do
  count=$(topics_cmd --describe --topic "$name" | sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | head -n 1)
  if [ "$count" != "$PARTITIONS" ]; then
    echo "create-topics: $name has $count partitions, expected $PARTITIONS (co-partitioning)" >&2
    status=1
  fi
done
exit "$status"
