"""Messages through a running gateway: ``submit`` them (REST or SOAP), follow one
(``status``), and list heenberichten still waiting for their retour (``overdue``).
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click

from gateway import envelope, freshen, soap
from gateway.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    UsageOrIOError,
    call,
    config_option,
    emit,
    gateway_client,
    json_option,
    local_time,
    url_option,
)
from gateway.client import ClientError, Unreachable
from gateway.xmlsafe import UnsafeXml, parse_untrusted


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--as", "partner", required=True, help="Partner id to submit as (its token).")
@click.option(
    "--fresh",
    is_flag=True,
    help="Send with a new Identificatie (and referentienummer), so a sample can be sent again.",
)
@config_option
@url_option
@json_option
def submit(
    files: tuple[Path, ...], partner: str, fresh: bool, config_path: Path, as_json: bool
) -> None:
    """Submit messages through a running gateway: raw iWmo/iJw (REST) or envelopes (SOAP)."""
    client = gateway_client(config_path, partner)
    results: list[dict[str, Any]] = []
    failed = 0
    for path in files:
        data = path.read_bytes()
        try:
            root = parse_untrusted(data)
        except UnsafeXml as exc:
            results.append({"file": str(path), "error": exc.message})
            failed += 1
            continue
        if envelope.is_envelope(root):
            if fresh:
                data = freshen.fresh_envelope(data)
            response = call(partial(client.submit_envelope, data, soap.soap_action_for(root)))
            if response.status_code == 200:
                ref = parse_untrusted(data).findtext(f".//{{{envelope.STUF_NS}}}referentienummer")
                results.append({"file": str(path), "result": "Bv03", "referentienummer": ref})
            else:
                fout = _fo03_body(response.content)
                results.append(
                    {
                        "file": str(path),
                        "error": "Fo03",
                        "code": fout.findtext(f"{{{envelope.STUF_NS}}}code")
                        if fout is not None
                        else None,
                        "omschrijving": fout.findtext(f"{{{envelope.STUF_NS}}}omschrijving")
                        if fout is not None
                        else response.text[:200],
                    }
                )
                failed += 1
        else:
            if fresh:
                data = freshen.fresh_payload(data)
            try:
                results.append({"file": str(path), **client.submit_raw(data)})
            except Unreachable as exc:
                raise UsageOrIOError(str(exc)) from None
            except ClientError as exc:
                results.append({"file": str(path), "error": str(exc)})
                failed += 1
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                code = f" {r['code']}" if r.get("code") else ""
                click.echo(
                    f"REFUSED  {r['file']}: {r['error']}{code} {r.get('omschrijving') or ''}"
                )
            else:
                follow = r.get("id") or r.get("referentienummer")
                click.echo(
                    f"accepted {r['file']}: {follow} "
                    f"→ {', '.join(r.get('destinations', [])) or 'routed'} "
                    f"(ggk status {follow})"
                )
    sys.exit(EXIT_INVALID if failed else EXIT_OK)


def _fo03_body(answer: bytes) -> Any:
    """The StUF body of a Fo03 answer, or None when the answer is not XML (a proxy's page)."""
    try:
        return parse_untrusted(answer).find(f".//{{{envelope.STUF_NS}}}body")
    except UnsafeXml:
        return None


@click.command()
@click.argument("message_id")
@config_option
@url_option
@json_option
def status(message_id: str, config_path: Path, as_json: bool) -> None:
    """Status, deliveries, history and conversation of a message (id or referentienummer)."""
    view = call(lambda: gateway_client(config_path).status(message_id))
    lines = [
        f"{view['id']}  {view['kind']} {view.get('functie') or ''}  "
        f"{view['zender']} → {view['ontvanger']}  ref {view['referentienummer']}"
    ]
    for d in view["deliveries"]:
        err = f"  ({d['last_error']})" if d.get("last_error") else ""
        lines.append(
            f"  delivery → {d['destination']} [{d['adapter']}]: {d['state']}, "
            f"{d['attempts']} attempt(s){err}"
        )
    for e in view["events"]:
        lines.append(f"  {local_time(e['at'])}  {e['event']}  {e['detail']}")
    if len(view["conversation"]) > 1:
        lines.append("  conversation:")
        lines += [
            f"    {c['functie'] or c['kind']} {c['id']} {c.get('retourcodes') or ''}"
            for c in view["conversation"]
        ]
    emit(view, as_json, "\n".join(lines))


@click.command()
@click.option(
    "--days",
    type=click.FloatRange(min=0, max=36500),
    default=None,
    help="Default: [retour] overdue_days.",
)
@config_option
@url_option
@json_option
def overdue(days: float | None, config_path: Path, as_json: bool) -> None:
    """Heenberichten still without a retourbericht after N days (OP090)."""
    data = call(lambda: gateway_client(config_path).overdue(days))
    human = "\n".join(
        f"{o['id']}  {o['functie']}  {o['zender']} → {o['ontvanger']}  "
        f"since {local_time(o['received_at'])}"
        for o in data["overdue"]
    )
    emit(data, as_json, human or f"nothing overdue (> {data['days']:g} days)")
