"""``ggk codelists list|show|export|update``: the code lists in use, one list's codes (or the
list in the file format, to edit), and installing an operator's list into the drop-in directory
(``[codelists] directory``) without a release.

``update`` validates every file before it installs any, so a bad file never replaces a good list;
it says per list what changes against the list in use. The gateway reads the lists when it
starts (gateway/codelists).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import click

from gateway.cli.common import (
    EXIT_INVALID,
    UsageOrIOError,
    config_option,
    emit,
    json_option,
    read_config,
)
from gateway.codelists import CodeList, CodeListError, CodeLists, load_file
from gateway.codelists.files import to_document
from gateway.codelists.registry import drop_ins, load


def _directory(config_path: Path, required: bool) -> Path | None:
    """The configured drop-in directory. Without a configuration file (the default path
    absent) the bundled lists are shown; ``update`` needs the key."""
    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("config_path") is not click.core.ParameterSource.DEFAULT
    if not explicit and not config_path.exists() and not required:
        return None
    config = read_config(config_path)
    if config.codelists_dir is None and required:
        raise UsageOrIOError(
            f'{config_path}: no [codelists] directory = "..." to install into (docs/codelists.md)'
        )
    return config.codelists_dir


def _lists(config_path: Path) -> CodeLists:
    try:
        return load(_directory(config_path, required=False))
    except CodeListError as exc:
        raise UsageOrIOError(str(exc)) from None


def _summary(cl: CodeList) -> dict[str, object]:
    s = cl.source
    return {
        "name": cl.name,
        "id": cl.id,
        "title": cl.title,
        "standard": cl.standard,
        "datatype": cl.datatype,
        "category": cl.category,
        "entries": len(cl.entries),
        "version": s.version,
        "date": s.date.isoformat() if s.date else None,
        "origin": s.origin,
        "source": {"repository": s.repository, "path": s.path, "commit": s.commit, "url": s.url},
    }


@click.group("codelists")
def codelists_group() -> None:
    """The official code lists: names and validity of codes (docs/codelists.md)."""


@codelists_group.command("list")
@config_option
@json_option
def list_command(config_path: Path, as_json: bool) -> None:
    """Every list in use: bundled, or replaced by a drop-in file."""
    lists = _lists(config_path)
    rows = [_summary(cl) for cl in lists]
    human = "\n".join(
        f"{r['name']:24} {r['id']:14} {r['entries']:>4}  {r['title']}  "
        f"[{r['version'] or '?'}; {r['origin']}]"
        for r in rows
    )
    emit({"lists": rows}, as_json, human)


@codelists_group.command("show")
@click.argument("name")
@config_option
@json_option
def show_command(name: str, config_path: Path, as_json: bool) -> None:
    """One list's source and codes."""
    cl = _lists(config_path).get(name)
    if cl is None:
        raise UsageOrIOError(f"no code list named {name!r}; see ggk codelists list")
    entries = [
        {
            "code": e.code,
            "name": e.name,
            "begin": e.begin.isoformat() if e.begin else None,
            "end": e.end.isoformat() if e.end else None,
            "details": dict(e.details),
        }
        for e in cl.entries
    ]
    head = [f"{cl.name}: {cl.title} ({cl.id})", f"  source: {cl.source.describe()}"]
    if cl.source.url:
        head.append(f"  official: {cl.source.url}")
    lines = [
        f"  {e['code']:8} {e['name']}"
        + (f"  [{e['begin'] or '…'} – {e['end'] or '…'}]" if e["begin"] or e["end"] else "")
        for e in entries
    ]
    emit({**_summary(cl), "codes": entries}, as_json, "\n".join(head + lines))


@codelists_group.command("export")
@click.argument("name")
@config_option
def export_command(name: str, config_path: Path) -> None:
    """One list in the file format on stdout: edit it and install it with ``update``."""
    cl = _lists(config_path).get(name)
    if cl is None:
        raise UsageOrIOError(f"no code list named {name!r}; see ggk codelists list")
    click.echo(json.dumps(to_document(cl), ensure_ascii=False, indent=1))


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
        if not found:
            raise UsageOrIOError(f"{path}: no *.json code list files in it")
        return found
    if path.is_file():
        return [path]
    raise UsageOrIOError(f"{path}: no such file or directory")


def _changes(old: CodeList | None, new: CodeList) -> str:
    """What installing ``new`` changes against the list in use, in one line."""
    if old is None:
        return f"new list, {len(new.entries)} codes (no list of this name was in use)"
    added = [c for c in new.by_code if c not in old.by_code]
    removed = [c for c in old.by_code if c not in new.by_code]
    changed = [
        c
        for c, e in new.by_code.items()
        if c in old.by_code
        and (old.by_code[c].name, old.by_code[c].begin, old.by_code[c].end)
        != (e.name, e.begin, e.end)
    ]
    if not (added or removed or changed):
        return f"no change in codes ({len(new.entries)}), replaces {old.source.origin}"

    def few(codes: Iterable[str]) -> str:
        items = list(codes)
        return ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")

    parts = [f"{len(old.entries)} → {len(new.entries)} codes"]
    if added:
        parts.append(f"added {few(added)}")
    if removed:
        parts.append(f"removed {few(removed)}")
    if changed:
        parts.append(f"name or dates changed {few(changed)}")
    return "; ".join(parts) + f" (replaces {old.source.origin})"


def _install(raw: bytes, target: Path) -> None:
    """Write ``raw`` to ``target`` whole or not at all (temporary file, then rename)."""
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "wb") as out:
        out.write(raw)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)


@codelists_group.command("update")
@click.argument("path", type=click.Path(path_type=Path))
@config_option
@click.option("--dry-run", is_flag=True, help="Validate and show the changes; install nothing.")
@json_option
def update_command(path: Path, config_path: Path, dry_run: bool, as_json: bool) -> None:
    """Validate code list files (a FILE or every *.json in a DIR) and install them in the
    drop-in directory, each replacing the list of the same name. The gateway uses them from
    its next start."""
    directory = _directory(config_path, required=True)
    assert directory is not None
    files = _files(path)
    try:
        current = load(directory)
        installed = drop_ins(directory)
    except CodeListError as exc:
        raise UsageOrIOError(f"the installed lists do not load: {exc}") from None
    incoming: dict[str, tuple[CodeList, bytes]] = {}
    problems: list[str] = []
    for file in files:
        try:
            cl = load_file(file)
            raw = file.read_bytes()
        except CodeListError as exc:
            problems.append(str(exc))
            continue
        except OSError as exc:
            problems.append(f"{file}: cannot read: {exc.strerror or exc}")
            continue
        if cl.name in incoming:
            problems.append(
                f"{file}: list {cl.name!r} is also in {incoming[cl.name][0].source.origin}"
            )
            continue
        incoming[cl.name] = (cl, raw)
    if problems:
        emit({"installed": [], "problems": problems}, as_json, "\n".join(problems))
        click.echo("nothing installed", err=True)
        raise SystemExit(EXIT_INVALID)
    report = []
    for name, (cl, raw) in sorted(incoming.items()):
        target = directory / f"{name}.json"
        report.append(
            {"name": name, "file": str(target), "change": _changes(current.get(name), cl)}
        )
        if dry_run:
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _install(raw, target)
            old = installed.get(name)
            if old is not None and Path(old.source.origin) != target:
                Path(old.source.origin).unlink()  # the same list under another file name
        except OSError as exc:
            raise UsageOrIOError(f"{target}: cannot install: {exc.strerror or exc}") from None
    verb = "would install" if dry_run else "installed"
    human = "\n".join(f"{verb} {r['name']} → {r['file']}: {r['change']}" for r in report)
    if not dry_run:
        human += "\nthe gateway uses the new lists from its next start (ggk serve)"
    emit({"installed" if not dry_run else "would_install": report, "problems": []}, as_json, human)
