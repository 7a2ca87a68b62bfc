"""Deliveries that failed for good: list them (``dlq list``) and deliver again (``replay``)."""

from __future__ import annotations

import sys
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.cli.common import (
    EXIT_INVALID,
    call,
    config_option,
    each_page,
    emit,
    gateway_client,
    json_option,
    progress_bar,
    url_option,
)
from gateway.client import GatewayClient

T = TypeVar("T")


@click.group()
def dlq() -> None:
    """Dead-lettered deliveries."""


@dlq.command("list")
@click.option("--partner", default=None)
@config_option
@url_option
@json_option
def dlq_list(partner: str | None, config_path: Path, as_json: bool) -> None:
    """List dead-lettered deliveries (all of them, a page at a time)."""
    letters = _all_dead_letters(gateway_client(config_path), partner, as_json)
    human = "\n".join(
        f"{d['id']}  {d['functie'] or d.get('kind') or '-'}  → {d['destination']}  "
        f"{d['attempts']} attempt(s): {d['last_error'] or '-'}"
        for d in letters
    )
    emit({"dead_letters": letters}, as_json, human or "no dead letters")


def _all_dead_letters(
    client: GatewayClient, partner: str | None, as_json: bool
) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = []
    with progress_bar(as_json, "dead letters") as bar:
        for page in each_page(client.all_dead_letters(partner)):
            letters += page
            bar.advance(len(page))
    return letters


@click.command()
@click.argument("message_id", required=False)
@click.option("--dlq", "all_dead", is_flag=True, help="Replay every dead-lettered delivery.")
@click.option(
    "--since",
    type=click.DateTime(),
    default=None,
    help="Replay every delivery of messages received since then.",
)
@click.option("--partner", default=None, help="Only deliveries to this partner.")
@click.option(
    "--include-delivered",
    is_flag=True,
    help="Also send again deliveries that succeeded (the receiver gets a duplicate).",
)
@config_option
@url_option
@json_option
def replay(
    message_id: str | None,
    all_dead: bool,
    since: datetime | None,
    partner: str | None,
    include_delivered: bool,
    config_path: Path,
    as_json: bool,
) -> None:
    """Deliver again what was not delivered: one message, all dead letters (--dlq), or
    --since T [--partner P]. A delivery that succeeded is only sent again with
    --include-delivered: the partner would otherwise get a duplicate it did not ask for."""
    if sum(bool(x) for x in (message_id, all_dead, since)) != 1:
        raise click.UsageError("give exactly one of MESSAGE_ID, --dlq or --since")
    if all_dead and include_delivered:
        raise click.UsageError(
            "--dlq replays dead letters only; --include-delivered goes with MESSAGE_ID or --since"
        )
    client = gateway_client(config_path)
    dead_only = not include_delivered
    if message_id:
        result = call(
            lambda: client.replay(message_id=message_id, dead_only=dead_only, partner=partner)
        )
        if not result["replayed"]:
            hint = (
                ""
                if include_delivered
                else (" that failed (add --include-delivered to send delivered ones again)")
            )
            emit(result, as_json, f"nothing to replay: no deliveries of {message_id}{hint}")
            sys.exit(EXIT_INVALID)
        emit(result, as_json, f"replayed {result['replayed']} delivery(ies)")
        return
    if since is not None:
        # one request, committed in chunks by the gateway: a bar without a total
        with progress_bar(as_json, "replaying"):
            result = call(
                lambda: client.replay(since=since.timestamp(), dead_only=dead_only, partner=partner)
            )
        emit(result, as_json, f"replayed {result['replayed']} delivery(ies)")
        return
    dead = _all_dead_letters(client, partner, as_json)
    ids = sorted({d["id"] for d in dead})
    total = 0
    with progress_bar(as_json, "replaying", len(ids)) as bar:
        for mid in ids:
            total += call(partial(client.replay, message_id=mid, partner=partner))["replayed"]
            bar.advance()
    emit({"replayed": total}, as_json, f"replayed {total} dead-lettered delivery(ies)")
