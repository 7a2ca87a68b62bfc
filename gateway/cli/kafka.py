"""``ggk kafka init``: create the Kafka backend's topics."""

from __future__ import annotations

import asyncio

import click
from aiokafka.errors import KafkaError

from gateway.broker import kafka_topics
from gateway.cli.common import UsageOrIOError, emit, json_option


@click.group()
def kafka() -> None:
    """The Apache Kafka backend (for gateways that outgrow one machine)."""


@kafka.command("init")
@click.option(
    "--bootstrap",
    required=True,
    envvar="GGK_KAFKA_BOOTSTRAP",
    help="Bootstrap servers, e.g. 127.0.0.1:9092.",
)
@click.option("--prefix", default="ggk", show_default=True)
@click.option("--partitions", type=click.IntRange(1), default=12, show_default=True)
@click.option(
    "--replication",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Use 1 for a single-broker development cluster.",
)
@json_option
def kafka_init(
    bootstrap: str, prefix: str, partitions: int, replication: int, as_json: bool
) -> None:
    """Create the backend's topics (idempotent: existing topics are left as they are)."""
    topics = kafka_topics.plan(prefix, partitions=partitions, replication=replication)
    try:
        created, existing = asyncio.run(kafka_topics.create(bootstrap, topics))
    except KafkaError as exc:
        raise UsageOrIOError(f"kafka at {bootstrap}: {exc}") from None
    emit(
        {"created": created, "existing": existing},
        as_json,
        "\n".join(
            [f"created  {name}" for name in created] + [f"exists   {name}" for name in existing]
        ),
    )
