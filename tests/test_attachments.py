"""The catalogue and the code attach every rule where the official tables do, and nowhere else.

``tests/data/official_rule_attachments.json`` holds the (standard, rule, message, class)
facts read mechanically from the official material by ``scripts/extract_rule_attachments.py``
(source and commit inside). The catalogue names messages and element paths; a path's class is
its last step that is an official class name, and a class belongs to a message when that
message's XSD declares it. A missing or extra attachment fails here, so a rule cannot again be
left off a message the tables attach it to (CD076 on the 301, issue 31).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

from gateway.bundled import schema_root
from gateway.rules import RULES
from gateway.rules.catalogue import Entry, Status, catalogue
from gateway.rules.screen import names_of
from gateway.standards import Standard
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "official_rule_attachments.json"

Triple = tuple[str, str, str, str]
"""(standard, rule id, message number, class)."""

ALLOWED: dict[Triple, str] = {
    # Deliberate differences between the catalogue and the official tables, each with its
    # reason. Empty: the catalogue follows the tables exactly. Add an entry only with a reason
    # a reviewer can check against the rule text.
}


@cache
def official() -> dict[str, object]:
    return json.loads(DATA.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _attachments() -> list[dict[str, str]]:
    return official()["attachments"]  # type: ignore[return-value]


def _technical() -> list[dict[str, object]]:
    return official()["technical"]  # type: ignore[return-value]


def official_triples(kinds: Iterable[str] = ("CS", "CD")) -> set[Triple]:
    wanted = tuple(kinds)
    return {
        (a["standard"], a["rule"], a["message"], a["class"])
        for a in _attachments()
        if a["rule"].startswith(wanted)
    }


@cache
def _classes_in(standard: str, number: int) -> frozenset[str]:
    """Element names the message's own XSD declares (its classes among them)."""
    folder = schema_root() / standard
    xsd = next(p for p in folder.rglob("*.xsd") if p.stem.lower().endswith(f"{number}"))
    return names_of(Path(xsd)).message


def class_of(path: str, classes: frozenset[str]) -> str | None:
    """The class an element path is in: its last step that is an official class name."""
    steps = [s for s in path.split("/") if s in classes]
    return steps[-1] if steps else None


def catalogue_triples(entries: Iterable[Entry]) -> set[Triple]:
    classes = frozenset(a["class"] for a in _attachments())
    out: set[Triple] = set()
    for e in entries:
        for path in e.elements:
            cls = class_of(path, classes)
            assert cls is not None, f"{e.id}: element {path!r} names no class"
            for standard in e.standards:
                for number in e.numbers:
                    if cls in _classes_in(standard.value, number):
                        out.add((standard.value, e.id, str(number), cls))
    return out


def test_the_data_file_names_its_source_and_commit() -> None:
    data = official()
    assert data["source"] == "i-Sociaal-Lab/jaapjunior"
    assert len(str(data["commit"])) == 40
    assert len(official_triples()) > 150


def test_every_cs_and_cd_is_attached_to_the_official_messages_and_classes() -> None:
    ours = catalogue_triples(e for e in catalogue().values() if e.kind in ("CS", "CD"))
    theirs = official_triples()
    missing = sorted(t for t in theirs - ours if t not in ALLOWED)
    extra = sorted(t for t in ours - theirs if t not in ALLOWED)
    assert not missing, f"official attachments the catalogue lacks: {missing}"
    assert not extra, f"catalogue attachments the official tables lack: {extra}"


def test_the_allow_list_only_names_real_differences() -> None:
    ours = catalogue_triples(e for e in catalogue().values() if e.kind in ("CS", "CD"))
    for triple, reason in ALLOWED.items():
        assert reason.strip(), triple
        assert (triple in ours) != (triple in official_triples()), f"{triple} is no difference"


def _code_messages(rule_id: str) -> set[str]:
    return {code for r in RULES if r.id == rule_id for code in r.messages}


def _official_messages(rule_id: str) -> set[str]:
    prefix = {s.value: s.message_prefix for s in Standard}
    found = {f"{prefix[s]}{m}" for s, r, m, _ in official_triples() if r == rule_id}
    for t in _technical():
        if t["rule"] == rule_id:
            found |= {f"{prefix[str(t['standard'])]}{m}" for m in t["messages"]}  # type: ignore[attr-defined]
    return found


def test_every_checked_cs_cd_and_tr_runs_on_exactly_the_official_messages() -> None:
    """The code: the registered checks of a rule run on the messages the tables name."""
    wrong = {}
    for e in catalogue().values():
        if e.status is not Status.RULE or e.kind not in ("CS", "CD", "TR"):
            continue
        code, theirs = _code_messages(e.id), _official_messages(e.id)
        if code != theirs:
            wrong[e.id] = (sorted(theirs - code), sorted(code - theirs))
    assert not wrong, f"rule: (missing, extra) messages in the code: {wrong}"


def test_every_tr_is_catalogued_for_the_messages_its_text_names() -> None:
    wrong = {}
    for t in _technical():
        e = catalogue()[str(t["rule"])]
        standard = Standard(str(t["standard"]))
        ours = {str(n) for n in e.numbers} if standard in e.standards else set()
        if ours != set(t["messages"]):  # type: ignore[call-overload]
            wrong[(standard.value, e.id)] = (sorted(t["messages"]), sorted(ours))  # type: ignore[call-overload]
    assert not wrong, f"(standard, rule): (official, catalogued) messages: {wrong}"


def test_cd076_is_attached_to_the_301() -> None:
    """The discrepancy issue 31 found, named on its own."""
    assert {"WMO301", "JW301"} <= _code_messages("CD076")


def official_ids() -> set[str]:
    return {a["rule"] for a in _attachments()} | {str(t["rule"]) for t in _technical()}


def _who_checks_what() -> dict[str, list[str]]:
    """The rows of docs/rules.md's *Who checks what* by rule id."""
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert "## Who checks what" in text, "docs/rules.md has no 'Who checks what' section"
    section = text.split("## Who checks what", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_docs_say_for_every_official_rule_where_it_is_checked_and_why() -> None:
    rows = _who_checks_what()
    missing = sorted(official_ids() - set(rows))
    assert not missing, f"official rules docs/rules.md does not place: {missing}"
    for rule_id in official_ids():
        _standards, where, why = rows[rule_id]
        assert where and why.strip(), rule_id


def test_rules_on_the_receivers_administration_stay_with_the_receiver() -> None:
    rows = _who_checks_what()
    for rule_id in ("TR304", "TR307", "TR314", "TR361"):
        assert rows[rule_id][1] == "receiver's administration", rule_id
        assert catalogue()[rule_id].status is Status.RECEIVER


def test_every_checked_cs_and_cd_attachment_has_a_firing_case() -> None:
    """Each official (rule, message, class) of a checked CS/CD fires in tests/test_rules.py on
    a mutated sample of that message, at an element of that class: the attachment is not only
    catalogued but exercised (CD076 on the 301 was neither)."""
    from gateway.validation import Validator
    from tests.test_rules import CASES, _apply

    classes = frozenset(a["class"] for a in _attachments())
    validator = Validator()
    fired: set[tuple[str, str, str]] = set()
    for rule_id, base, edits in CASES:
        if rule_id[:2] not in ("CS", "CD"):
            continue
        number = base.rsplit("/", 1)[-1][-7:-4]
        for problem in validator.validate(_apply(base, edits), base).problems:
            cls = class_of(re.sub(r"\[\d+\]", "", problem.path or ""), classes)
            if problem.rule == rule_id and cls is not None:
                fired.add((rule_id, number, cls))
    wanted = {
        (r, m, c) for _, r, m, c in official_triples() if catalogue()[r].status is Status.RULE
    }
    missing = sorted(wanted - fired)
    assert not missing, f"(rule, message, class) without a firing case: {missing}"


def test_the_data_file_is_what_the_script_extracts_from_its_commit() -> None:
    """Regenerated from the mirror when it is on this machine (``GGK_JAAPJUNIOR_GIT`` or the
    default path): the committed file is not edited by hand, nor stale for its commit."""
    import os
    import subprocess
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from extract_rule_attachments import DEFAULT_MIRROR, Git, extract

    git_dir = Path(os.environ.get("GGK_JAAPJUNIOR_GIT", str(DEFAULT_MIRROR)))
    if not (git_dir / "HEAD").is_file():
        pytest.skip(f"no jaapjunior mirror at {git_dir} (set GGK_JAAPJUNIOR_GIT)")
    git = Git(git_dir)
    commit = str(official()["commit"])
    has = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if has.returncode != 0:
        pytest.skip(f"the mirror lacks commit {commit}")
    git.commit = commit
    assert extract(git) == official(), "run python scripts/extract_rule_attachments.py"
