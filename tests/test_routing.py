"""Route table and partner registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.partners import PartnerKind, PartnerRegistry, RegistryError, token_digest
from routing.table import Destination, Refusal, RoutedMessage, RouteTable

TABLE = RouteTable.from_config(
    [
        {
            "name": "no youth care to CAK",
            "messages": ["JW301"],
            "receiver": "CAK",
            "action": "reject",
            "reject_code": "IB234",
        },
        {
            "name": "eigen bijdrage",
            "messages": ["WMO301", "WMO305", "WMO307"],
            "action": "copy",
            "copy_to": ["CAK"],
        },
        {
            "name": "svb for pgb",
            "standard": "ijw",
            "sender_kind": "gemeente",
            "action": "copy",
            "copy_to": ["SVB"],
        },
        {"name": "addressee", "action": "deliver"},
    ]
)


def msg(
    functie: str,
    sender_kind: PartnerKind = PartnerKind.GEMEENTE,
    receiver: str = "12345678",
    standard: str = "iwmo",
) -> RoutedMessage:
    return RoutedMessage(functie, standard, "0150", sender_kind, receiver)


def test_copy_to_cak_and_deliver() -> None:
    assert TABLE.route(msg("WMO301")) == [
        Destination("CAK", True, "eigen bijdrage"),
        Destination("12345678", False, "addressee"),
    ]
    assert TABLE.route(msg("WMO315", PartnerKind.AANBIEDER, "0150")) == [
        Destination("0150", False, "addressee")
    ]


def test_match_on_standard_and_sender_kind() -> None:
    routed = TABLE.route(msg("JW301", standard="ijw"))
    assert isinstance(routed, list) and [d.partner for d in routed] == ["SVB", "12345678"]
    routed = TABLE.route(msg("JW305", PartnerKind.AANBIEDER, "0150", "ijw"))
    assert isinstance(routed, list) and [d.partner for d in routed] == ["0150"]


def test_reject_and_no_route() -> None:
    assert TABLE.route(msg("JW301", receiver="CAK", standard="ijw")) == Refusal(
        "IB234", "message refused by route", "no youth care to CAK"
    )
    copy_only = RouteTable.from_config([{"action": "copy", "copy_to": ["CAK"]}])
    refused = copy_only.route(msg("WMO301"))
    assert isinstance(refused, Refusal) and refused.code == "IB102"


def test_copy_never_goes_back_to_sender_or_twice_to_receiver() -> None:
    table = RouteTable.from_config(
        [{"action": "copy", "copy_to": ["0150", "12345678"]}, {"action": "deliver"}]
    )
    assert table.route(msg("WMO301")) == [Destination("12345678", False, "route #2")]


def test_bad_route_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="route #1"):
        RouteTable.from_config([{"action": "teleport"}])


def test_partner_registry(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[[partner]]\nid = "0150"\nkind = "gemeente"\ntoken_sha256 = '
        f'"{token_digest("s3cret")}"\n[partner.delivery]\nadapter = "http"\n'
        'url = "http://127.0.0.1:9/x"\n'
    )
    registry = PartnerRegistry.load(path)
    partner = registry.by_token("s3cret")
    assert partner is not None and partner.delivery.settings == {"url": "http://127.0.0.1:9/x"}
    assert registry.by_token("wrong") is None
    path.write_text('[[partner]]\nid = "0150"\nkind = "bank"\n')
    with pytest.raises(RegistryError, match="partner #1"):
        PartnerRegistry.load(path)
