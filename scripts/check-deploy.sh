#!/usr/bin/env bash
# Validates every deployment artifact offline; CI runs it as ctest `deploy_manifests`.
#
#   scripts/check-deploy.sh                    # exits non-zero on any problem
#   FS_BIN_DIR=build/bin scripts/check-deploy.sh   # also compare config keys with --help
#   FS_DEPLOY_STRICT_KEYS=1 ...                # undeclared config keys fail instead of warn
#
# 1. docker-compose config -q (Debian's docker-compose, no Docker engine needed)
# 2. deploy/kafka/create-topics.sh against a stub kafka-topics.sh (records what it would create)
# 3. kubectl kustomize k8s/base and every k8s/overlays/* (offline)
# 4. tests/deploy/check_manifests.py: references, selectors, probes, ports, topics, KEDA,
#    MirrorMaker 2, Collector and Grafana wiring, Dockerfile users (see its docstring)
# Non-interactive and idempotent: writes only to a temporary directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

die() { echo "check-deploy: ERROR: $*" >&2; exit 1; }
for tool in docker-compose kubectl python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done
python3 -c 'import yaml' 2>/dev/null || die "python3 yaml module missing (Debian: python3-yaml)"

# 1. Compose file: schema, interpolation, references between services.
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml config >"$TMP/compose.yaml"
echo "check-deploy: docker-compose.yml ok"

# 2. Topic init script, run against a stub CLI that records --create calls and answers
#    --describe with the partition count it was given.
bash -n deploy/kafka/create-topics.sh
mkdir -p "$TMP/kafka-bin" "$TMP/topics"
cat >"$TMP/kafka-bin/kafka-topics.sh" <<'STUB'
#!/usr/bin/env bash
state="${STUB_STATE:?}"; topic=""; parts=""; configs=(); action=""
while [ $# -gt 0 ]; do
  case "$1" in
    --create|--describe|--list) action="$1" ;;
    --topic) topic="$2"; shift ;;
    --partitions) parts="$2"; shift ;;
    --config) configs+=("$2"); shift ;;
    --bootstrap-server|--replication-factor) shift ;;
  esac
  shift
done
case "$action" in
  --list) ls "$state" ;;
  --create)
    [ -e "$state/$topic" ] && exit 0
    (IFS=,; echo "$topic|$parts|${configs[*]}") >"$state/$topic" ;;
  --describe)
    IFS='|' read -r _ p _ <"$state/$topic"
    printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\tReplicationFactor: 1\n' "$topic" "$p" ;;
esac
STUB
chmod +x "$TMP/kafka-bin/kafka-topics.sh"
STUB_STATE="$TMP/topics" KAFKA_BIN="$TMP/kafka-bin" BOOTSTRAP=stub:9092 PARTITIONS=12 \
  bash deploy/kafka/create-topics.sh >"$TMP/create-topics.log" \
  || { cat "$TMP/create-topics.log" >&2; die "deploy/kafka/create-topics.sh failed"; }
cat "$TMP"/topics/* >"$TMP/compose-topics.txt"
echo "check-deploy: create-topics.sh ok ($(wc -l <"$TMP/compose-topics.txt") topics)"

# 3. Every kustomization that is meant to be applied.
renders=()
for dir in k8s/base k8s/overlays/*/; do
  dir="${dir%/}"
  name="$(basename "$dir")"
  kubectl kustomize "$dir" >"$TMP/render-$name.yaml" || die "kubectl kustomize $dir failed"
  renders+=(--render "$name=$TMP/render-$name.yaml")
  echo "check-deploy: kubectl kustomize $dir ok"
done

# 4. Semantic checks.
args=(--root "$ROOT" --compose "$TMP/compose.yaml" --compose-topics "$TMP/compose-topics.txt"
      "${renders[@]}")
bin_dir="${FS_BIN_DIR:-$ROOT/build/bin}"
[ -d "$bin_dir" ] && args+=(--bin-dir "$bin_dir")
[ "${FS_DEPLOY_STRICT_KEYS:-0}" = "1" ] && args+=(--strict-keys)
python3 tests/deploy/check_manifests.py "${args[@]}"

# 5. Runtime package names in the Dockerfile exist in Debian 12 (when apt lists are present).
if apt-cache show libc6 >/dev/null 2>&1; then
  pkgs=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile \
    | grep -E '^RUN apt-get update' | grep -oE 'install -y --no-install-recommends[^&]*' \
    | sed 's/install -y --no-install-recommends//' | tr ' ' '\n' | grep -v '^$' | sort -u)
  # One apt-cache call (each costs seconds): the packages it knows, compared with the list.
  known=$(apt-cache show --no-all-versions $pkgs 2>/dev/null | sed -n 's/^Package: //p' | sort -u)
  missing=$(comm -23 <(echo "$pkgs") <(echo "$known") | tr '\n' ' ')
  [ -z "$missing" ] || die "Dockerfile installs packages Debian does not have: $missing"
  echo "check-deploy: Dockerfile runtime packages exist ($(echo $pkgs | wc -w))"
else
  echo "check-deploy: Dockerfile package names: skipped (no apt lists)"
fi
echo "check-deploy: all checks passed"
