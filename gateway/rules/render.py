"""The rule catalogue as text for people: ``ggk rules list`` and ``docs/rules.md``.

Both are generated from :mod:`gateway.rules.catalogue` (plus the TR101 key table), so the
documentation cannot disagree with what the gateway checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from gateway.rules import pairs
from gateway.rules.catalogue import RECEIVER_HOW, Entry, Status, catalogue, known_releases
from gateway.rules.keys import LOGICAL_KEYS

STATUS_WORDS = {
    Status.RULE: "checked (rule engine)",
    Status.XSD: "checked (XSD)",
    Status.GATEWAY: "checked (gateway state)",
    Status.RECEIVER: "receiver's check",
    Status.EXTERNAL: "external list",
}


def messages_text(entry: Entry) -> str:
    """``301 305 (iWmo, iJw)``: numbers once, the standards after them."""
    numbers = " ".join(str(n) for n in entry.numbers)
    standards = ", ".join(s.label for s in entry.standards)
    return f"{numbers} ({standards})"


def line(entry: Entry) -> str:
    """One catalogue entry on one line for a terminal."""
    code = entry.retourcode or "-"
    return (
        f"{entry.id}  level {entry.level}  {code:4}  {entry.status.value:8}  "
        f"{release_text(entry)}  {messages_text(entry)}  {entry.summary}"
    )


def release_text(entry: Entry) -> str:
    """``release 3.2``, or ``every release`` for a release-independent rule."""
    return "every release" if entry.independent else f"release {entry.release}"


CODE_LISTS = (
    "## Code lists",
    "",
    "TR378 and TR381 (control level 4, *externe bron*) are checked by the rule engine against",
    "the public code lists the gateway ships as data with their source and version",
    "(`gateway/codelists`, [codelists.md](codelists.md); `ggk codelists list` shows them).",
    "",
    "- **TR378** (`S300`): a gemeentecode (the header's Afzender or Ontvanger that is a",
    "  gemeente, the JW319 Woonplaatsbeginsel's Gemeente) is in the list `gemeentecodes`",
    "  (CBS gemeentelijke indeling). Around a herindeling (every 1 January) the rule allows",
    "  an older CBS list for the toewijzing's Ingangsdatum: a code is accepted when it is valid",
    "  on the Dagtekening or on any Ingangsdatum, ToewijzingIngangsdatum, GewensteIngangsdatum",
    "  or Begindatum in the message. The bundled list is the indeling of 1 January 2026",
    "  without dates; an operator adds dissolved gemeenten with their end date as a drop-in.",
    "- **TR381** (`S329`): a ProductCode is in the product code list of its ProductCategorie",
    "  (`<standard>-productcodes-<category>`). Bundled: iWmo 11, 12 and 13 (indeling",
    "  hulpmiddelen 2022). A category without a list is not checked here: its codes are agreed",
    "  per contract and the receiver answers with S329.",
    "- An operator replaces or adds a list without a release: `ggk codelists update FILE`",
    "  (validated, then installed in the `[codelists] directory`); the gateway reads the lists",
    "  when it starts.",
    "- TR418 (contract tariffs) stays with the receiver: the contracts are not public.",
    "",
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(entries: Iterable[Entry], *, with_elements: bool) -> list[str]:
    head = "| id | level | retourcode | messages | what | "
    head += "elements | reading |" if with_elements else "how the gateway treats it |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for e in entries:
        cells = [
            f"`{e.id}`" + (" (warning)" if e.severity.value == "warning" else ""),
            str(e.level),
            e.retourcode or "–",
            messages_text(e),
            _cell(e.summary),
        ]
        if with_elements:
            cells += [_cell(", ".join(f"`{x}`" for x in e.elements)), _cell(e.note)]
        else:
            cells += [_cell(e.how or e.note)]
        out.append("| " + " | ".join(cells) + " |")
    return out


WHERE: dict[Status, tuple[str, str]] = {
    Status.RULE: (
        "gateway, at accept",
        "The message alone decides it (control level 2): refused before it is routed.",
    ),
    Status.XSD: (
        "gateway, at accept (XSD)",
        "A constraint of the schema (control level 1): refused before it is routed.",
    ),
    Status.GATEWAY: (
        "gateway, across messages it carries",
        "Decided against messages the gateway itself stored.",
    ),
    Status.RECEIVER: (
        "receiver's administration",
        "Needs the receiver's own records (clients, toewijzingen, starts, stops, earlier "
        "claims); the gateway keeps no shadow administration of clients.",
    ),
    Status.EXTERNAL: (
        "external list",
        "Needs a list outside the message flow.",
    ),
}
"""Where a rule of each status is checked, and the general reason (issue 31.4)."""


def where(entry: Entry) -> tuple[str, str]:
    """(where the rule is checked, why there): the status's place, the entry's own reason."""
    place, why = WHERE.get(entry.status, (entry.status.value, ""))
    own = entry.how if entry.how != RECEIVER_HOW else ""
    return place, f"{why} {own}".strip()


def where_table(entries: Iterable[Entry]) -> list[str]:
    """``docs/rules.md``'s *Who checks what*: every rule id, sorted, with place and reason."""
    out = ["| id | standards | where | why there |", "|---|---|---|---|"]
    for e in sorted(entries, key=lambda x: x.id):
        place, why = where(e)
        standards = ", ".join(s.label for s in e.standards)
        out.append(f"| `{e.id}` | {standards} | {place} | {_cell(why)} |")
    return out


def markdown(example_faults: Iterable[tuple[str, str, str]]) -> str:
    """``docs/rules.md``: the whole catalogue, grouped by how the gateway treats each rule.

    ``example_faults``: (official example, verdict, why) rows, kept with the conformance test.
    """
    entries = list(catalogue().values())
    counts = Counter(e.status for e in entries)
    by_status = {s: [e for e in entries if e.status is s] for s in Status}
    out = [
        "# Rules of iWmo 3.2 and iJw 3.2, and how the gateway checks them",
        "",
        "Generated by `python scripts/generate_rules_doc.py` from the rule catalogue",
        "(`gateway/rules/catalogue.toml`); `tests/test_catalogue.py` fails when this file is",
        "stale.",
        "The same data: `ggk rules list [--json] [--message WMO301]`.",
        "",
        f"{len(entries)} rules: "
        + ", ".join(f"{counts[s]} {STATUS_WORDS[s]}" for s in Status if counts[s])
        + ".",
        "",
        "Control levels (iStandaarden): 1 XSD, 2 message content (retourcode 0001), 3 across",
        "messages (own retourcode), 4 external source. Levels 1-2 refuse the message (Fo03 /",
        "retourcode 0001); a level 3/4 finding names the rule's own retourcode. Every rule below",
        "marked *checked (rule engine)* has a firing and a silent case in `tests/test_rules.py`.",
        "",
        "## Releases",
        "",
        "The catalogue is keyed by standard and release; it holds the rules of "
        + ", ".join(known_releases())
        + " (`ggk rules list` shows each rule's release). A message of a release without",
        "known rules (a 3.3 bundle added with `--schema-dir`) is checked against its own XSD",
        "and the release-independent rules only ("
        + ", ".join(f"`{e.id}`" for e in entries if e.independent)
        + "), never another release's: it is logged",
        "(`rules_unknown_release`) and the REST answer carries the warning `RULES-RELEASE`.",
        "An onderhoudsrelease keeps the namespace (3.2.1 beside 3.2.0): both bundles stay",
        "loaded and the message's `XsdVersie/BerichtXsdVersie` chooses the XSD: the one that",
        "declares exactly that version, else one whose appinfo range",
        "`BerichtXsdMinVersie`..`BerichtXsdMaxVersie` holds it (none: the bundle loaded last,",
        "and IV034 warns); its rules are the release's (3.2).",
        "",
        "## Who checks what",
        "",
        "Every rule of the official catalogue and where it is checked: by the gateway when it",
        "accepts a message (the XSD and the rule engine), by the gateway against messages it",
        "carries itself, by the receiver against its own administration (the gateway keeps no",
        "shadow administration of clients: TR304 and the other rules that compare a message",
        "with toewijzingen, starts, stops or claims stay with the receiver, who answers with the",
        "retourcode), or against an external list. `tests/test_attachments.py` checks that",
        "every official rule id appears here.",
        "",
        *where_table(entries),
        "",
        "## Checked by the rule engine",
        "",
        *_table(by_status[Status.RULE], with_elements=True),
        "",
        "### TR101 logical keys",
        "",
        "Siblings under one parent are compared; a key element that is absent takes part as",
        "absent.",
        "",
        "| messages | class (below its parent) | key |",
        "|---|---|---|",
        *(
            f"| {' '.join(str(n) for n in k.messages)} | `{k.parent}/{k.child}` | "
            f"{', '.join(f'`{f}`' for f in k.fields)} |"
            for k in LOGICAL_KEYS
        ),
        "",
        "## Checked by the gateway with its own state",
        "",
        *_table(by_status[Status.GATEWAY], with_elements=False),
        "",
        *pairs.DOC,
        "",
        "## Enforced by the XSD",
        "",
        *_table(by_status[Status.XSD], with_elements=False),
        "",
        "## Left to the receiver",
        "",
        "These compare a message with the receiver's administration (assignments, starts, stops,",
        "earlier claims). The gateway routes the message; the receiving gemeente or aanbieder",
        "answers with the retourcode in its retourbericht.",
        "",
        *_table(by_status[Status.RECEIVER], with_elements=False),
        "",
        *CODE_LISTS,
        "## Needing an external list",
        "",
        *_table(by_status[Status.EXTERNAL], with_elements=False),
        "",
        "## The official example messages",
        "",
        "The 3.2 example messages (iJw: all 14; iWmo: the 7 heenberichten) and the verdict each",
        "gets, checked by `tests/test_official.py` where the official material is present.",
        "",
        "| example | verdict | why |",
        "|---|---|---|",
        *(f"| {name} | {verdict} | {why} |" for name, verdict, why in example_faults),
        "",
    ]
    return "\n".join(out)
