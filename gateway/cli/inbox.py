"""``ggk inbox``: a partner's waiting messages, listed or saved to files and acknowledged."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import (
    call,
    config_option,
    each_page,
    emit,
    gateway_client,
    json_option,
    local_time,
    progress_bar,
    url_option,
)
from gateway.client import GatewayClient
from gateway.envelope import named_message
from gateway.safefiles import UnsafeName, file_name, private_dir, write_new
from gateway.standards import MESSAGES


@click.command()
@click.argument("partner")
@click.option(
    "--save",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Fetch the envelopes into this directory and acknowledge them.",
)
@config_option
@url_option
@json_option
def inbox(partner: str, save: Path | None, config_path: Path, as_json: bool) -> None:
    """List (and with --save: fetch and acknowledge) a partner's waiting messages, all of
    them, a page of 1,000 at a time."""
    client = gateway_client(config_path, partner)
    items: list[dict[str, Any]] = []
    with progress_bar(as_json, "saving" if save else "listing") as bar:
        if save is None:
            for page in each_page(client.inbox_pages()):
                items += page
                bar.advance(len(page))
        else:
            private_dir(save)
            # acknowledged messages leave the inbox: the first page is always the next one
            while page := call(lambda: client.inbox(1000))["messages"]:
                for item in page:
                    _save_and_ack(client, save, item)
                    bar.advance()
                items += page
    human = (
        "\n".join(
            f"{i['id']}  {i['functie'] or i['kind']}  from {i['zender']}  "
            f"{local_time(i['received_at'])}"
            for i in items
        )
        or "inbox is empty"
    )
    if save is not None:
        human += f"\nsaved and acknowledged {len(items)} message(s) in {save}"
    emit({"partner": partner, "messages": items}, as_json, human)


def _save_and_ack(client: GatewayClient, folder: Path, item: dict[str, Any]) -> None:
    """Write one inbox message to ``folder`` and only then acknowledge it."""
    name = _inbox_file_name(item)
    data = call(partial(client.inbox_envelope, item["id"]))
    if not write_new(folder, name, data):
        raise click.ClickException(
            f"{folder / name} exists; not overwritten (message {item['id']} is not "
            "acknowledged and stays in the inbox)"
        )
    call(partial(client.ack, item["id"]))


def _inbox_file_name(item: dict[str, Any]) -> str:
    """``<functie>_<id>.xml`` from checked parts only: the functie is the sender's choice, so
    anything but a known message code (or Di01/Du01/Fo01) becomes ``bericht``."""
    functie = str(item.get("functie") or item.get("kind") or "")
    message = named_message(functie)
    known = message.code if message is not None else functie
    if known not in {m.code for m in MESSAGES.values()} | {"Di01", "Du01", "Fo01"}:
        known = "bericht"
    try:
        return file_name(known, str(item["id"]))
    except UnsafeName:
        raise click.ClickException(
            f"the gateway sent an unusable message id: {item['id']!r}"
        ) from None
