"""A real three-broker Apache Kafka cluster on 127.0.0.1 (KRaft, every node broker and
controller, static quorum), for the tests and drills that must lose a broker.

Jars are the ones ``scripts/kafka-dev.sh fetch`` resolves from Maven Central. Topics default
to replication 3 with ``min.insync.replicas = 2``, so an ``acks=all`` write survives the loss
of any one node; failure detection is shortened (broker session 3 s, replica lag 5 s) so a
killed node's partitions move within seconds instead of the production defaults' ~30 s.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kit.harness import free_port, wait_for_brokers

ROOT = Path(__file__).resolve().parent.parent
LIBS = ROOT / ".kafka" / "libs"
HEAP = os.environ.get("KAFKA_HEAP", "-Xmx384m")


@dataclass
class KafkaCluster:
    """Three nodes; node ids are 1..n, ``ports[i]`` is node i+1's client port."""

    directory: Path
    ports: list[int]
    controller_ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node_dir(self, node: int) -> Path:
        return self.directory / f"node{node}"

    def start(self, node: int) -> None:
        """Start (or restart) one node on its existing data."""
        log = open(self.node_dir(node) / "broker.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[node] = subprocess.Popen(
            ["java", HEAP, "-cp", f"{LIBS}/*", "kafka.Kafka", str(self._properties(node))],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self, node: int) -> None:
        """kill -9: no controlled shutdown, no leadership hand-over."""
        process = self.processes.pop(node)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        self.processes.clear()

    def _properties(self, node: int) -> Path:
        return self.node_dir(node) / "server.properties"

    def write_properties(self, node: int) -> Path:
        voters = ",".join(
            f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(self.controller_ports)
        )
        port, cport = self.ports[node - 1], self.controller_ports[node - 1]
        self.node_dir(node).mkdir(parents=True, exist_ok=True)
        path = self._properties(node)
        path.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={node}",
                    f"controller.quorum.voters={voters}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.node_dir(node) / 'data'}",
                    "num.partitions=4",
                    "default.replication.factor=3",
                    "min.insync.replicas=2",
                    "offsets.topic.replication.factor=3",
                    "transaction.state.log.replication.factor=3",
                    "transaction.state.log.min.isr=2",
                    "share.coordinator.state.topic.replication.factor=3",
                    "share.coordinator.state.topic.min.isr=2",
                    "group.initial.rebalance.delay.ms=0",
                    "broker.session.timeout.ms=3000",
                    "broker.heartbeat.interval.ms=500",
                    "replica.lag.time.max.ms=5000",
                    "unclean.leader.election.enable=false",
                    "",
                ]
            )
        )
        return path


def fetch_jars() -> None:
    subprocess.run([str(ROOT / "scripts" / "kafka-dev.sh"), "fetch"], check=True, timeout=900)


@contextlib.contextmanager
def kafka_cluster(directory: Path, nodes: int = 3) -> Iterator[KafkaCluster]:
    """Format and start ``nodes`` nodes; yielded once every broker is registered."""
    fetch_jars()
    cluster = KafkaCluster(
        directory, [free_port() for _ in range(nodes)], [free_port() for _ in range(nodes)]
    )
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    for node in range(1, nodes + 1):
        properties = cluster.write_properties(node)
        subprocess.run(
            [
                "java",
                "-cp",
                f"{LIBS}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(properties),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    try:
        for node in range(1, nodes + 1):
            cluster.start(node)
        wait_for_brokers(cluster.bootstrap, nodes)
        yield cluster
    finally:
        cluster.stop()
