"""Configuration typos are refused, one line naming the nearest known key (issue 28, point 5).

Every table of gateway.toml, each ``[[route]]`` and partners.toml is read through
gateway/tables.py, so a key the loader does not read cannot load silently.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway import demo
from gateway.config import (
    ConfigError,
    ConnectionLimits,
    DeliveryConfig,
    KafkaConfig,
)
from gateway.config import (
    load as load_config,
)
from routing.partners import PartnerRegistry, RegistryError
from routing.table import RouteTable


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    demo.init(tmp_path / "gw", port=18443)
    return tmp_path / "gw" / "gateway.toml"


def test_the_demo_configuration_loads(demo_config: Path) -> None:
    config = load_config(demo_config)
    PartnerRegistry.load(config.partners_file)
    assert config.routes


TYPOS = [
    # (after this line of the demo config, this misspelt line) -> the key it suggests
    ("[gateway]\n", "max_mesage_bytes = 5", "[gateway]", "max_message_bytes"),
    ("[gateway]\n", 'brokr = "kafka"', "[gateway]", "broker"),
    ("[audit]\n", "retension_days = 3", "[audit]", "retention_days"),
    ("[limits]\n", "partner_rat = 5", "[limits]", "partner_rate"),
    ("[delivery]\n", "max_atempts = 5", "[delivery]", "max_attempts"),
    ("[auth]\n", "metrics_from_loopbak = true", "[auth]", "metrics_from_loopback"),
    ("[figures]\n", "min_cel = 10", "[figures]", "min_cell"),
    ("[retour]\n", "overdue_day = 2", "[retour]", "overdue_days"),
    ("[tls]\n", 'client_cA = "x.pem"', "[tls]", "client_ca"),
    ("[[route]]\n", "mesages = []", "route #1", "messages"),
    ("[retour]\n", "[retour_]\novrdue = 1", "top level", "retour"),
]


@pytest.mark.parametrize(("after", "line", "where", "nearest"), TYPOS)
def test_a_misspelt_key_is_refused_naming_the_nearest(
    demo_config: Path, after: str, line: str, where: str, nearest: str
) -> None:
    text = demo_config.read_text()
    assert after in text
    demo_config.write_text(text.replace(after, f"{after}{line}\n", 1))
    with pytest.raises(ConfigError) as raised:
        load_config(demo_config)
    message = str(raised.value)
    assert "\n" not in message
    assert where in message and f"did you mean {nearest!r}" in message, message


@pytest.mark.parametrize(
    ("table", "line", "nearest"),
    [
        ("kafka", 'bootstrap = "127.0.0.1:9092"\nprefx = "x"', "prefix"),
        ("ebms", 'oin = "00000001234567890000"\ncpa_dirr = "cpa"', "cpa_dir"),
    ],
)
def test_optional_tables_refuse_typos_too(
    demo_config: Path, table: str, line: str, nearest: str
) -> None:
    demo_config.write_text(demo_config.read_text() + f"\n[{table}]\n{line}\n")
    with pytest.raises(ConfigError, match=f"did you mean {nearest!r}"):
        load_config(demo_config)


def test_a_key_like_no_other_lists_the_known_ones(demo_config: Path) -> None:
    text = demo_config.read_text()
    demo_config.write_text(text.replace("[retour]\n", "[retour]\nzzz = 1\n", 1))
    with pytest.raises(ConfigError, match=r"unknown setting 'zzz' \(known: overdue_days\)"):
        load_config(demo_config)


@pytest.mark.parametrize(
    ("cls", "table"),
    [(DeliveryConfig, "delivery"), (ConnectionLimits, "limits"), (KafkaConfig, "kafka")],
)
def test_every_field_of_a_settings_table_is_a_known_key(
    tmp_path: Path, cls: type[object], table: str
) -> None:
    """The known keys are the dataclass's fields (one place): each one set alone loads."""
    path = tmp_path / "gateway.toml"
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING or f.default is None:
            continue
        value = f.default
        written = str(value).lower() if isinstance(value, bool) else repr(value)
        written = f'"{value}"' if isinstance(value, str) else written
        bootstrap = 'bootstrap = "127.0.0.1:9092"\n' if table == "kafka" else ""
        path.write_text(
            f"[gateway]\nplain_http = true\n[{table}]\n{bootstrap}{f.name} = {written}\n"
        )
        load_config(path)


def test_partners_refuse_typos(tmp_path: Path) -> None:
    path = tmp_path / "partners.toml"
    path.write_text('[[partner]]\nid = "0150"\nkind = "gemeente"\ntokn_sha256 = "ab"\n')
    with pytest.raises(RegistryError, match="partner #1: unknown setting 'tokn_sha256'"):
        PartnerRegistry.load(path)
    path.write_text('[[partnr]]\nid = "0150"\nkind = "gemeente"\n')
    with pytest.raises(RegistryError, match="did you mean 'partner'"):
        PartnerRegistry.load(path)


def test_route_entries_refuse_typos() -> None:
    with pytest.raises(ValueError, match="route #2: unknown setting 'copy_too'"):
        RouteTable.from_config(
            [{"action": "deliver"}, {"action": "copy", "copy_too": ["CAK"]}], "gateway.toml"
        )


@pytest.mark.parametrize(
    ("adapter", "typo", "message"),
    [
        ("http", 'urll = "https://x"', "did you mean 'url'"),
        ("stuf", 'ca_fiel = "ca.pem"', "did you mean 'ca_file'"),
        ("directory", 'paht = "out"', "did you mean 'path'"),
        ("inbox", 'url = "https://x"', "known: adapter"),
        ("ebms", 'cpaa = "CPA_1"', "did you mean 'cpa'"),
    ],
)
def test_every_built_in_adapter_refuses_a_setting_it_does_not_read(
    tmp_path: Path, adapter: str, typo: str, message: str
) -> None:
    """An adapter's own settings in [partner.delivery] are checked against what it declares
    (``setting_keys``): a typo names the partner, the adapter and the nearest known key."""
    path = tmp_path / "partners.toml"
    path.write_text(
        f'[[partner]]\nid = "0150"\nkind = "gemeente"\n'
        f'[partner.delivery]\nadapter = "{adapter}"\n{typo}\n'
    )
    with pytest.raises(RegistryError, match=f"partner 0150.*adapter '{adapter}'.*{message}"):
        PartnerRegistry.load(path)


def test_an_adapter_that_declares_no_settings_is_not_checked(tmp_path: Path) -> None:
    """A third-party adapter (here: one not installed) declares no ``setting_keys``: its
    settings reach it as written."""
    path = tmp_path / "partners.toml"
    path.write_text(
        '[[partner]]\nid = "0150"\nkind = "gemeente"\n'
        '[partner.delivery]\nadapter = "elsewhere"\nqueue = "q1"\n'
    )
    partner = PartnerRegistry.load(path).get("0150")
    assert partner is not None and partner.delivery.settings == {"queue": "q1"}
