"""CPAs: read and checked (profiles, parties, references, period), imported per partner, listed.

The CPAs come from kit/ebms.py; where the team's OASIS schemas and the ebMS peer's CPAs are
beside the project (../shared), they are validated against cpp-cpa-2_0.xsd too.
"""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from cli import main
from gateway.config import ConfigError
from gateway.config import load as load_config
from gateway.ebms.cpa import CpaError, Profile, load_schema, parse
from gateway.ebms.cpastore import CpaStore
from kit.ebms import GATEWAY, PEER, Capture, Side, fresh_signer, gateway_with_cpa, make_cpa
from kit.gateway import rest, running
from routing.partners import PartnerRegistry
from tests.test_ops import exported

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
XSD_DIR = SHARED / "standards" / "ebms2-xsd"
PEER_CPAS = SHARED / "tools" / "ebms-peer" / "cpa"
needs_xsd = pytest.mark.skipif(
    not (XSD_DIR / "cpp-cpa-2_0.xsd").is_file(),
    reason="the OASIS CPP/CPA schema is not beside the project (../shared/standards/ebms2-xsd)",
)


def _certificate() -> bytes:
    return fresh_signer("signer").certificate


@pytest.mark.parametrize(
    ("profile", "sync", "expected"),
    [("osb-be", False, Profile.BE), ("osb-rm", False, Profile.RM), ("osb-rm", True, Profile.RM)],
)
def test_profiles_are_read_from_the_channels(profile: str, sync: bool, expected: Profile) -> None:
    cpa = parse(make_cpa(profile, sync=sync), loopback_ok=True)
    assert cpa.cpaid == "CPA_TEST_gateway_1" and cpa.profiles == {expected}
    ours = cpa.party(GATEWAY.oin)
    assert ours is not None and ours.role == "Gemeente" and cpa.other(GATEWAY.oin).oin == PEER.oin
    binding = ours.receives[("urn:osb:services:TEST:GgkGateway:1:0", "ggk_Di01")]
    assert binding.channel.sync_reply_mode == ("mshSignalsOnly" if sync else "none")
    if expected is Profile.RM:
        assert (binding.channel.retries, binding.channel.retry_interval) == (
            3,
            datetime.timedelta(minutes=1),
        )
    theirs = cpa.other(GATEWAY.oin)
    assert theirs.sends[("urn:osb:services:TEST:GgkGateway:1:0", "ggk_Di01")].channel.endpoint == (
        PEER.endpoint
    )


def test_signed_profile_carries_the_partner_certificate_from_the_cpa() -> None:
    der = _certificate()
    peer = Side(PEER.oin, PEER.name, PEER.role, PEER.endpoint, der)
    gateway = Side(GATEWAY.oin, GATEWAY.name, GATEWAY.role, GATEWAY.endpoint, _certificate())
    cpa = parse(make_cpa("osb-rm-s", peer=peer, gateway=gateway), loopback_ok=True)
    assert cpa.profiles == {Profile.RM_SIGNED}
    sender = cpa.other(GATEWAY.oin).sends[("urn:osb:services:TEST:GgkGateway:1:0", "Fo01")]
    assert sender.channel.signing_certificate == der
    assert sender.channel.hash_function == "http://www.w3.org/2001/04/xmlenc#sha256"


def _mutated(edit: str, new: str, data: bytes | None = None) -> bytes:
    text = (data or make_cpa("osb-rm")).decode()
    assert edit in text, edit
    return text.replace(edit, new).encode()


@pytest.mark.parametrize(
    ("edit", "new", "words"),
    [
        ('tns:value="agreed"', 'tns:value="proposed"', "Status is not 'agreed'"),
        ("2099-12-31T00:00:00Z", "2025-01-01T00:00:00Z", "the CPA ended on"),
        ("2024-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "Start before End"),
        ("CPA_TEST_gateway_1", "CPA.TEST/1", "cpaid"),
        (
            "B_R_ggk_Di01</tns:OtherPartyActionBinding>",
            "B_R_nothing</tns:OtherPartyActionBinding>",
            "does not define",
        ),
        (
            'tns:ackRequested="always" tns:ackSignatureRequested="never" '
            'tns:duplicateElimination="always"',
            'tns:ackRequested="always" tns:ackSignatureRequested="never" '
            'tns:duplicateElimination="never"',
            "must both be",
        ),
        ("NotGuaranteed", "Guaranteed", "MessageOrderSemantics 'Guaranteed' is not supported"),
        ("http://127.0.0.1:18888/ebms", "http://partner.example.nl/ebms", "is not https://"),
        ('tns:syncReplyMode="none"', 'tns:syncReplyMode="signalsOnly"', "is not one of"),
        (
            '<tns:PartyId tns:type="urn:osb:oin">00000001111111111000',
            '<tns:PartyId tns:type="urn:osb:oin">1234',
            "is not an OIN",
        ),
        ('tns:name="GGK"', 'tns:name="GGK"/><tns:Role tns:name="CORV"', "exactly one Role"),
    ],
)
def test_a_cpa_the_gateway_cannot_honour_is_refused_with_its_reason(
    edit: str, new: str, words: str
) -> None:
    with pytest.raises(CpaError) as refused:
        parse(_mutated(edit, new), loopback_ok=True)
    assert any(words in p for p in refused.value.problems), refused.value.problems


def test_every_problem_is_reported_at_once() -> None:
    data = _mutated('tns:value="agreed"', 'tns:value="proposed"')
    data = _mutated("NotGuaranteed", "Guaranteed", data)
    with pytest.raises(CpaError) as refused:
        parse(data, loopback_ok=True)
    assert len(refused.value.problems) >= 3  # status, and the order on each side


def test_weak_signing_and_encryption_are_refused() -> None:
    der = _certificate()
    peer = Side(PEER.oin, PEER.name, PEER.role, PEER.endpoint, der)
    gateway = Side(GATEWAY.oin, GATEWAY.name, GATEWAY.role, GATEWAY.endpoint, der)
    signed = make_cpa("osb-rm-s", peer=peer, gateway=gateway)
    with pytest.raises(CpaError, match="SHA-1"):
        parse(_mutated("xmlenc#sha256", "xmldsig#sha1", signed), loopback_ok=True)
    envelope = "</tns:SenderNonRepudiation>"
    encrypted = _mutated(
        envelope, envelope + "<tns:SenderDigitalEnvelope/>", signed
    )  # not schema-valid, enough for the profile
    with pytest.raises(CpaError, match="XML Encryption"):
        parse(encrypted, loopback_ok=True)


def test_hostile_documents_are_refused_before_reading() -> None:
    with pytest.raises(CpaError, match="not a usable XML document"):
        parse(b'<!DOCTYPE x [<!ENTITY e "x">]><x/>')
    with pytest.raises(CpaError, match="CollaborationProtocolAgreement"):
        parse(b"<x/>")


@needs_xsd
def test_test_cpas_are_valid_against_the_oasis_schema() -> None:
    schema = load_schema(XSD_DIR)
    for profile in ("osb-be", "osb-rm"):
        assert schema.validate(etree.fromstring(make_cpa(profile))), schema.error_log
    with pytest.raises(CpaError, match="line"):
        parse(
            _mutated("<tns:Start>", "<tns:Begin>").replace(b"</tns:Start>", b"</tns:Begin>"),
            schema=schema,
        )


@needs_xsd
def test_the_peer_kits_cpas_are_read() -> None:
    schema = load_schema(XSD_DIR)
    files = sorted(PEER_CPAS.glob("*.xml"))
    assert files
    for path in files:
        cpa = parse(path.read_bytes(), schema=schema, loopback_ok=True)
        assert {p.oin for p in cpa.parties} == {PEER.oin, GATEWAY.oin}


# --- import, list, show -----------------------------------------------------------------------


def _setup(tmp_path: Path, *, schema: bool = False) -> Path:
    (tmp_path / "partners.toml").write_text(
        f'[[partner]]\nid = "0150"\nname = "Deventer"\nkind = "gemeente"\noin = "{PEER.oin}"\n'
    )
    extra = f'schema_dir = "{XSD_DIR}"\n' if schema else ""
    (tmp_path / "gateway.toml").write_text(
        '[gateway]\nplain_http = true\nhost = "127.0.0.1"\npartners = "partners.toml"\n'
        f'[ebms]\noin = "{GATEWAY.oin}"\ncpa_dir = "cpa"\nloopback_http = true\n{extra}'
    )
    (tmp_path / "cpa.xml").write_bytes(make_cpa("osb-rm"))
    return tmp_path / "gateway.toml"


def _ggk(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_import_list_show(tmp_path: Path) -> None:
    config = str(_setup(tmp_path))
    code, out = _ggk("cpa", "import", str(tmp_path / "cpa.xml"), "--config", config, "--json")
    assert code == 0, out
    imported = json.loads(out)
    assert imported["imported"] and imported["partner"] == "0150"
    assert imported["profiles"] == ["osb-rm"] and not imported["schema_validated"]
    stored = tmp_path / "cpa" / "CPA_TEST_gateway_1.xml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    code, out = _ggk("cpa", "import", str(tmp_path / "cpa.xml"), "--config", config)
    assert code == 1 and "imported already" in out
    code, out = _ggk("cpa", "import", str(tmp_path / "cpa.xml"), "--config", config, "--replace")
    assert code == 0 and "imported CPA_TEST_gateway_1" in out
    code, out = _ggk("cpa", "list", "--config", config)
    assert code == 0 and out.splitlines()[0].startswith("CPA_TEST_gateway_1  0150  osb-rm")
    code, out = _ggk("cpa", "show", "CPA_TEST_gateway_1", "--config", config)
    assert code == 0 and "we receive: urn:osb:services:TEST:GgkGateway:1:0 ggk_Di01" in out
    code, out = _ggk("cpa", "show", "../../etc/passwd", "--config", config)
    assert code == 1 and "no imported CPA" in out


def test_a_cpa_with_an_unknown_partner_or_without_us_is_refused(tmp_path: Path) -> None:
    config = str(_setup(tmp_path))
    stranger = Side("00000009999999999000", "Stranger", "GGK", PEER.endpoint)
    (tmp_path / "other.xml").write_bytes(make_cpa("osb-rm", peer=stranger))
    code, out = _ggk("cpa", "import", str(tmp_path / "other.xml"), "--config", config)
    assert code == 1 and 'add oin = "00000009999999999000"' in out
    (tmp_path / "notus.xml").write_bytes(make_cpa("osb-rm", gateway=stranger))
    code, out = _ggk("cpa", "import", str(tmp_path / "notus.xml"), "--config", config, "--json")
    assert code == 1 and "neither party is this gateway" in json.loads(out)["problems"][0]
    assert not (tmp_path / "cpa").exists() or not list((tmp_path / "cpa").iterdir())


@needs_xsd
def test_import_validates_against_the_oasis_schema_when_configured(tmp_path: Path) -> None:
    config = str(_setup(tmp_path, schema=True))
    code, out = _ggk("cpa", "import", str(tmp_path / "cpa.xml"), "--config", config, "--json")
    assert code == 0 and json.loads(out)["schema_validated"]


def test_without_an_ebms_table_the_commands_say_so(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text("[gateway]\nplain_http = true\n")
    code, out = _ggk("cpa", "list", "--config", str(tmp_path / "gateway.toml"))
    assert code == 2 and "no [ebms] table" in out


def test_a_signed_cpa_needs_our_key_and_its_certificate(tmp_path: Path) -> None:
    from gateway.ebms.cpastore import CpaStore
    from kit.ebms import write_signer
    from routing.partners import PartnerRegistry

    config_path = _setup(tmp_path)
    ours, other = write_signer(tmp_path / "keys", "ours"), write_signer(tmp_path / "keys", "x")
    peer = Side(PEER.oin, PEER.name, PEER.role, PEER.endpoint, _certificate())
    gateway = Side(GATEWAY.oin, GATEWAY.name, GATEWAY.role, GATEWAY.endpoint, ours.certificate)
    signed = make_cpa("osb-rm-s", peer=peer, gateway=gateway)

    def store(extra: str = "") -> CpaStore:
        text = config_path.read_text().split("[ebms]")[0]
        config_path.write_text(
            text + f'[ebms]\noin = "{GATEWAY.oin}"\ncpa_dir = "cpa"\nloopback_http = true\n{extra}'
        )
        config = load_config(config_path)
        assert config.ebms is not None
        return CpaStore(config.ebms, PartnerRegistry.load(config.partners_file))

    with pytest.raises(CpaError, match="set \\[ebms\\] signing_key"):
        store().check(signed)
    keys = 'signing_key = "keys/{0}.key"\nsigning_cert = "keys/{0}.crt"\n'
    with pytest.raises(CpaError, match="is not \\[ebms\\] signing_cert"):
        store(keys.format("x")).check(signed)
    assert store(keys.format("ours")).check(signed).cpa.profiles == {Profile.RM_SIGNED}
    del other
    asks = make_cpa("osb-rm-s", peer=peer, gateway=gateway, ack_signed=True)
    assert store(keys.format("ours")).check(asks).cpa.profiles == {Profile.RM_SIGNED}
    unsigned = make_cpa("osb-rm", peer=peer, gateway=gateway, ack_signed=True)
    with pytest.raises(CpaError, match="asks signed acknowledgments, but our signal channel"):
        store(keys.format("ours")).check(unsigned)


@pytest.mark.parametrize(
    ("extra", "future", "past"),
    [
        ("", 300, 3600),
        ("timestamp_future_seconds = 60\ntimestamp_past_seconds = 86400\n", 60, 86400),
        ("timestamp_future_seconds = -1\n", None, None),
        ('timestamp_past_seconds = "1h"\n', None, None),
        ("timestamp_past_seconds = true\n", None, None),
        ("timestamp_past_seconds = 9999999\n", None, None),
    ],
)
def test_the_timestamp_window_is_configured_in_whole_seconds(
    tmp_path: Path, extra: str, future: int | None, past: int | None
) -> None:
    config_path = _setup(tmp_path)
    config_path.write_text(config_path.read_text() + extra)
    if future is None:
        with pytest.raises(ConfigError, match="timestamp_"):
            load_config(config_path)
        return
    config = load_config(config_path)
    assert config.ebms is not None
    assert (config.ebms.timestamp_future_seconds, config.ebms.timestamp_past_seconds) == (
        future,
        past,
    )


# --- a CPA's end: days left, the gauge, the warning -------------------------------------------


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_list_shows_each_cpas_end_and_the_days_left(tmp_path: Path) -> None:
    config = str(_setup(tmp_path))
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10, hours=1)
    (tmp_path / "ending.xml").write_bytes(make_cpa("osb-rm", cpaid="CPA_ENDING", end=_stamp(soon)))
    for file in ("cpa.xml", "ending.xml"):
        code, out = _ggk("cpa", "import", str(tmp_path / file), "--config", config)
        assert code == 0, out
    code, out = _ggk("cpa", "list", "--config", config)
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["CPA_ENDING"].endswith("(10 days left, RENEW)")
    assert "until 2099-12-31T00:00:00+00:00" in lines["CPA_TEST_gateway_1"]
    assert (
        "days left)" in lines["CPA_TEST_gateway_1"] and "RENEW" not in lines["CPA_TEST_gateway_1"]
    )
    code, out = _ggk("cpa", "list", "--config", config, "--json")
    by_id = {row["cpaid"]: row for row in json.loads(out)["cpas"]}
    assert by_id["CPA_ENDING"]["days_left"] == 10
    assert by_id["CPA_ENDING"]["end"] == soon.replace(microsecond=0).isoformat()


def test_a_cpa_near_its_end_is_warned_of_once_a_day() -> None:
    from structlog.testing import capture_logs

    from gateway.ebms.cpastore import Link
    from gateway.ebms.lifecycle import EndWarnings
    from routing.partners import Partner, PartnerKind

    now = datetime.datetime(2026, 12, 6, 9, 0, tzinfo=datetime.UTC)
    partner = Partner("0150", "Deventer", PartnerKind.GEMEENTE, oin=PEER.oin)

    def link(cpaid: str, days: float) -> Link:
        cpa = parse(
            make_cpa("osb-rm", cpaid=cpaid, end=_stamp(now + datetime.timedelta(days=days))),
            loopback_ok=True,
            now=now,
        )
        ours = cpa.party(GATEWAY.oin)
        assert ours is not None
        return Link(cpa, ours, cpa.other(GATEWAY.oin), partner)

    links = {"CPA_SOON": link("CPA_SOON", 12.5), "CPA_LATER": link("CPA_LATER", 45)}
    warnings = EndWarnings()
    with capture_logs() as logs:
        assert warnings.check(links, now) == ["CPA_SOON"]
        for hour in range(1, 15):  # every maintenance round of the day: nothing more
            assert warnings.check(links, now + datetime.timedelta(hours=hour)) == []
        assert warnings.check(links, now + datetime.timedelta(days=1)) == ["CPA_SOON"]
    assert [(e["event"], e["cpaid"], e["days_left"]) for e in logs] == [
        ("ebms.cpa_ending", "CPA_SOON", 12),
        ("ebms.cpa_ending", "CPA_SOON", 11),
    ]


async def test_the_gauge_gives_the_seconds_left_of_each_loaded_cpa(
    tmp_path: Path, capture: Capture
) -> None:
    setup = gateway_with_cpa(tmp_path, capture)
    config = load_config(setup.config_path)
    assert config.ebms is not None
    store = CpaStore(config.ebms, PartnerRegistry.load(config.partners_file))
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=20)
    store.add(make_cpa("osb-rm", cpaid="CPA_ENDING", end=_stamp(soon)))
    async with running(setup):
        status, body = await rest(setup, "GET", "/metrics", token=setup.token())
    assert status == 200
    left = {labels: value for labels, value in exported(body)["ggk_cpa_seconds_left"]}
    assert set(left) == {'{cpaid="CPA_ENDING"}', '{cpaid="CPA_TEST_gateway_1"}'}
    assert 19.9 * 86400 < left['{cpaid="CPA_ENDING"}'] <= 20 * 86400
    assert left['{cpaid="CPA_TEST_gateway_1"}'] > 70 * 365 * 86400
