#!/usr/bin/env bash
# A single-node Apache Kafka 4.x broker (KRaft, broker+controller) on 127.0.0.1, for tests and
# development. Jars come from Maven Central through Maven; nothing else is downloaded.
#
#   scripts/kafka-dev.sh fetch                 resolve the jars into .kafka/libs
#   scripts/kafka-dev.sh start DIR PORT CPORT  format DIR, start the broker, wait until ready
#   scripts/kafka-dev.sh stop DIR              stop the broker started in DIR
#
# Point the gateway at an existing cluster instead by setting its bootstrap servers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
libs="$root/.kafka/libs"
heap="${KAFKA_HEAP:--Xmx512m}"

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  mkdir -p "$libs"
  mvn -q -B -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs" -DincludeScope=runtime
  touch "$libs/.complete"
}

start() {
  local dir="$1" port="$2" cport="$3"
  fetch
  mkdir -p "$dir"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  local cid
  cid="$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  java -cp "$libs/*" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
       --standalone > "$dir/format.log" 2>&1
  nohup java $heap -cp "$libs/*" kafka.Kafka "$dir/server.properties" > "$dir/broker.log" 2>&1 &
  echo $! > "$dir/broker.pid"
  for _ in $(seq 1 120); do
    if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "kafka ready on 127.0.0.1:$port (pid $(cat "$dir/broker.pid"))"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      echo "kafka exited; see $dir/broker.log" >&2
      tail -n 20 "$dir/broker.log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "kafka did not open 127.0.0.1:$port within 60 s; see $dir/broker.log" >&2
  return 1
}

stop() {
  local dir="$1" pid
  [ -f "$dir/broker.pid" ] || return 0
  pid="$(cat "$dir/broker.pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || { rm -f "$dir/broker.pid"; return 0; }; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/broker.pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 fetch | start DIR PORT CONTROLLER_PORT | stop DIR" >&2; exit 2 ;;
esac
