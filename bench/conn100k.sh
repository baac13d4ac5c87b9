#!/usr/bin/env bash
# Holds many MQTT connections open with `kite bench conn` against mosquitto on this machine, then
# closes them cleanly and prints what it cost: connections up and failed, the resident memory of
# the client processes and of the brokers.
#
#   bench/conn100k.sh [deno|bun] [CONNECTIONS] [HOLD_SECONDS]     # defaults: deno 100000 60
#
# It raises the open-file limit as far as it may; where the hard limit is below what one process
# needs (a container without CAP_SYS_RESOURCE), it splits the connections over several client
# processes and as many mosquitto brokers, each within the limit. Each broker has LISTENERS ports
# (max_connections -1); the connections are spread over source addresses 127.0.0.1, 127.0.0.2, ...
# (--ifaddr), at most PER_SOURCE each, so that no source address runs out of ephemeral ports.
# Once every client process says all its connections are up, they are held HOLD_SECONDS with
# keepalive running (KEEPALIVE, default 60 s), then each process gets SIGINT and disconnects its
# clients with DISCONNECT.
#
# Environment: LISTENERS (4), PER_SOURCE (5000; 0: no --ifaddr, so Deno dials with Deno.connect),
# RATE (connections a second per process, 2000), KEEPALIVE (60), BASE_PORT (21883), MOSQUITTO (the
# binary), KEEP_LOGS=1 (keep the work folder).
set -euo pipefail

runtime=${1:-deno}
connections=${2:-100000}
hold=${3:-60}
listeners=${LISTENERS:-4}
per_source=${PER_SOURCE:-5000}
rate=${RATE:-2000}
keepalive=${KEEPALIVE:-60}
base_port=${BASE_PORT:-21883}
mosquitto=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
root=$(cd "$(dirname "$0")/.." && pwd)

case "$runtime" in
deno) kite=(deno run -A --quiet "$root/src/cli/mod.ts") ;;
bun) kite=(bun run "$root/src/cli/mod.ts") ;;
*)
  echo "usage: $0 [deno|bun] [CONNECTIONS] [HOLD_SECONDS]" >&2
  exit 2
  ;;
esac

# Open files: one per connection in the client and in the broker, and some to spare.
ulimit -n $((connections + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
limit=$(ulimit -n)
per_process=$((limit - 1024))
((per_process > connections)) && per_process=$connections
processes=$(((connections + per_process - 1) / per_process))
if ((per_source > 0)); then
  sources=$(((connections + per_source - 1) / per_source))
  spread=(--ifaddr "$(seq -s, -f '127.0.0.%g' 1 "$sources")")
else
  # The system's choice of source address and port: on Deno, Deno.connect rather than node:net.
  sources=1
  spread=()
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kite-conn100k.XXXXXX")
broker_pids=()
client_pids=()
cleanup() {
  for pid in "${client_pids[@]}" "${broker_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [[ ${KEEP_LOGS:-} == 1 ]] && echo "logs kept in $work" || rm -rf "$work"
}
trap cleanup EXIT

echo "$(date -u +%FT%TZ) $("${kite[0]}" --version | head -1 | sed "s/^\([0-9]\)/$runtime \1/")," \
  "$(nproc) cores," \
  "$(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -sr)"
echo "$connections connections: $processes client process(es) of at most $per_process," \
  "$processes mosquitto(s) with $listeners ports each, from $sources source address(es)," \
  "open-file limit $limit, keepalive $keepalive s"

rss_kib() { ps -o rss= -p "$1" 2>/dev/null | tr -d ' ' || echo 0; }

# One broker per client process, each with its own ports.
for ((b = 0; b < processes; b++)); do
  conf="$work/mosquitto-$b.conf"
  {
    echo "per_listener_settings false"
    echo "allow_anonymous true"
    echo "max_connections -1"
    echo "persistence false"
    echo "log_dest stderr"
    echo "log_type error"
    echo "log_type warning"
    [[ $(id -u) == 0 ]] && echo "user root"
    for ((l = 0; l < listeners; l++)); do
      echo "listener $((base_port + b * listeners + l)) 127.0.0.1"
    done
  } >"$conf"
  "$mosquitto" -c "$conf" >"$work/mosquitto-$b.log" 2>&1 &
  broker_pids+=($!)
done
# mosquitto binds its ports at once; give it a moment to, then check each one answers.
for ((b = 0; b < processes; b++)); do
  for ((l = 0; l < listeners; l++)); do
    port=$((base_port + b * listeners + l))
    for _ in $(seq 50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
  done
done

started=$(date +%s)
for ((p = 0; p < processes; p++)); do
  count=$per_process
  ((p == processes - 1)) && count=$((connections - per_process * (processes - 1)))
  urls=()
  for ((l = 0; l < listeners; l++)); do
    urls+=(-L "mqtt://127.0.0.1:$((base_port + p * listeners + l))")
  done
  "${kite[@]}" bench conn "${urls[@]}" -c "$count" -R "$rate" -k "$keepalive" \
    "${spread[@]}" --prefix "c100k-$p" --json \
    >"$work/client-$p.json" 2>"$work/client-$p.log" &
  client_pids+=($!)
done

# Wait until every process has made all its attempts (it says "N of M connected").
for ((p = 0; p < processes; p++)); do
  until grep -q " connected, " "$work/client-$p.log" 2>/dev/null; do
    if ! kill -0 "${client_pids[$p]}" 2>/dev/null; then
      echo "client process $p ended early:" >&2
      tail -5 "$work/client-$p.log" >&2
      exit 1
    fi
    sleep 1
  done
done
ramp=$(($(date +%s) - started))
for ((p = 0; p < processes; p++)); do grep " connected, " "$work/client-$p.log"; done
echo "all attempts made in about $ramp s; holding for $hold s"

sleep "$hold"
client_rss=0
for pid in "${client_pids[@]}"; do client_rss=$((client_rss + $(rss_kib "$pid"))); done
broker_rss=0
for pid in "${broker_pids[@]}"; do broker_rss=$((broker_rss + $(rss_kib "$pid"))); done
established=$(ss -Htn state established "( sport >= :$base_port and sport < :$((base_port + processes * listeners)) )" | wc -l)
# The last progress line of each process: up, failed, lost now.
for ((p = 0; p < processes; p++)); do tail -1 "$work/client-$p.log"; done

closing=$(date +%s%N)
for pid in "${client_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
statuses=()
for pid in "${client_pids[@]}"; do
  status=0
  wait "$pid" || status=$?
  statuses+=("$status")
done
client_pids=()
closed_in=$((($(date +%s%N) - closing) / 1000000))
closed_after=$(ss -Htn state established "( sport >= :$base_port and sport < :$((base_port + processes * listeners)) )" | wc -l)

up=0 failed=0 lost=0
for ((p = 0; p < processes; p++)); do
  json=$(cat "$work/client-$p.json")
  field() { grep -o "\"$1\":[0-9]*" <<<"$json" | head -1 | cut -d: -f2; }
  up=$((up + $(field up)))
  failed=$((failed + $(field failed)))
  lost=$((lost + $(field lost)))
done
rss_peak=0
for ((p = 0; p < processes; p++)); do
  value=$(grep -o '"rssBytes":{"end":[0-9]*,"peak":[0-9]*' "$work/client-$p.json" | grep -o '[0-9]*$')
  rss_peak=$((rss_peak + value))
done

echo
echo "connections up at the end of the hold: $up of $connections ($failed failed, $lost lost);" \
  "established at the brokers: $established; after SIGINT: $closed_after"
echo "closed (SIGINT to every process exited) in $closed_in ms; exit statuses: ${statuses[*]}"
echo "client RSS after holding: $((client_rss / 1024)) MiB in all," \
  "$((client_rss * 1024 / (up > 0 ? up : 1))) bytes per connection (peak $((rss_peak / 1048576)) MiB)"
echo "mosquitto RSS: $((broker_rss / 1024)) MiB in all"

for pid in "${broker_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${broker_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
broker_pids=()
