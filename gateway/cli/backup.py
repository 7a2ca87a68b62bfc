"""``ggk backup`` (a gateway copied while it serves) and ``ggk restore`` (put back into a new
folder, checked); see gateway/backup.py and docs/operations.md."""

from __future__ import annotations

from pathlib import Path

import click

from gateway import backup
from gateway.cli.common import UsageOrIOError, config_option, emit, json_option, read_config


class _Steps:
    """Progress of a copy on stderr, a line per quarter of each file (none for --json)."""

    def __init__(self, shown: bool) -> None:
        self.shown = shown
        self.said: dict[str, int] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.shown or total <= 0:
            return
        quarter = 4 * done // total
        if self.said.get(what, -1) < quarter:
            self.said[what] = quarter
            click.echo(f"{what}: {100 * done // total}%", err=True)


@click.command(name="backup")
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--keyring",
    "keyring_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the keyring to this new file, outside the backup (keep it apart).",
)
@config_option
@json_option
def backup_command(
    target: Path, keyring_out: Path | None, config_path: Path, as_json: bool
) -> None:
    """Copy the gateway (configuration, certificates, data) into the new folder TARGET, while
    it serves. The keyring is not in the backup; without it the data cannot be read."""
    config = read_config(config_path)
    try:
        manifest = backup.back_up(config, target, keyring_out, _Steps(not as_json))
    except backup.BackupError as exc:
        raise UsageOrIOError(str(exc)) from None
    except OSError as exc:
        raise UsageOrIOError(f"cannot write the backup to {target}: {exc.strerror}") from None
    stores = ", ".join(
        f"{name}: {s['messages']} messages, {s['audit_records']} audit records"
        for name, s in manifest.stores.items()
        if s["messages"] or s["audit_records"]
    )
    keyring_note = (
        f"keyring written to {keyring_out}: keep it apart from the backup (offline)"
        if keyring_out is not None
        else "the keyring is NOT in the backup: back it up separately (ggk backup --keyring "
        "FILE); without it the data cannot be read or restored"
    )
    emit(
        {**manifest.to_dict(), "target": str(target)},
        as_json,
        f"backed up {len(manifest.files)} files into {target} ({stores or 'no messages'})\n"
        + keyring_note,
    )
    if keyring_out is None and not as_json:
        click.echo("warning: " + keyring_note, err=True)


@click.command(name="restore")
@click.argument("source", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--keyring",
    "keyring_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="The keyring written with the backup; placed where the configuration expects it.",
)
@json_option
def restore_command(source: Path, target: Path, keyring_file: Path | None, as_json: bool) -> None:
    """Restore the backup SOURCE into the new folder TARGET, checking every file's digest,
    every store's integrity and (with --keyring) that the keyring opens the data."""
    try:
        restored = backup.restore(source, target, keyring_file, _Steps(not as_json))
    except backup.BackupError as exc:
        raise UsageOrIOError(str(exc)) from None
    except OSError as exc:
        raise UsageOrIOError(f"cannot restore into {target}: {exc.strerror}") from None
    lines = [f"restored into {target}"]
    lines += [
        f"  {name}: {facts.messages} messages, {facts.audit_records} audit records"
        for name, facts in restored.stores.items()
    ]
    if restored.keyring_placed is None:
        lines.append(
            "  no keyring given: put the keyring where the configuration expects it "
            "([audit] keyring or $GGK_KEYRING) before `ggk serve`"
        )
    lines.append(
        f"check it with: ggk audit verify --config {restored.config}; "
        f"start it with: ggk serve --config {restored.config}"
    )
    emit(
        {
            "config": str(restored.config),
            "stores": {
                name: {"messages": f.messages, "audit_records": f.audit_records}
                for name, f in restored.stores.items()
            },
            "keyring": str(restored.keyring_placed) if restored.keyring_placed else None,
        },
        as_json,
        "\n".join(lines),
    )
