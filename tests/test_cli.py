"""``ggk validate`` and ``ggk schemas`` through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLES

GGK = str(Path(sys.executable).parent / "ggk")


def ggk(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GGK, *args],
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_valid_directories_exit_0() -> None:
    result = ggk(
        "validate",
        "--today",
        "2026-11-22",
        str(SAMPLES / "iwmo"),
        str(SAMPLES / "ijw"),
        str(SAMPLES / "envelopes"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "32 documents: 32 valid, 0 invalid" in result.stdout


def test_invalid_file_exits_1_and_names_rule_path_and_line() -> None:
    result = ggk("validate", str(SAMPLES / "invalid" / "wmo301-einddatum-voor-ingangsdatum.xml"))
    assert result.returncode == 1
    assert (
        "CS003 [retourcode 0001] at Client/ToegewezenProducten/ToegewezenProduct[1]/"
        "Einddatum (line" in result.stdout
    )
    assert "expected: on or after 2026-10-05; found: 2026-10-04" in result.stdout


def test_missing_path_exits_2_before_any_output() -> None:
    result = ggk("validate", str(SAMPLES / "iwmo" / "wmo301.xml"), "/no/such/file.xml")
    assert result.returncode == 2
    assert result.stdout == "" and "no such file or directory" in result.stderr


def test_stdin_and_json() -> None:
    data = (SAMPLES / "invalid" / "wmo323-totaal-klopt-niet.xml").read_bytes()
    result = ggk("validate", "--json", "-", stdin=data)
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["summary"] == {**out["summary"], "documents": 1, "valid": 0, "invalid": 1}
    report = out["reports"][0]
    assert report["message"]["code"] == "WMO323" and report["retourcodes"] == ["0001"]
    assert report["problems"][0]["rule"] == "TR358"
    assert report["problems"][0]["path"] == "Declaratie/TotaalIngediendBedrag"


def test_no_bsn_in_output_for_an_invalid_bsn() -> None:
    result = ggk(
        "validate",
        "--json",
        str(SAMPLES / "invalid" / "wmo301-bsn-letters.xml"),
        str(SAMPLES / "invalid" / "wmo301-bsn-elfproef.xml"),
    )
    assert result.returncode == 1
    assert "99999001A" not in result.stdout and "123456789" not in result.stdout


@pytest.mark.slow
def test_schema_dir_and_schemas_list(tmp_path: Path) -> None:
    result = ggk("schemas", "list", "--json", "--compile")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    messages = [r for r in rows if r["release"]]
    envelopes = {r["message"] for r in rows if not r["release"]}
    assert len(messages) == 28 and {r["message"] for r in messages} >= {"WMO301", "JW325"}
    assert envelopes == {"ggk0210", "ggk0310", "StUF0301"}
    broken = tmp_path / "bundle"
    broken.mkdir()
    (broken / "x.xsd").write_text("<not-a-schema/>")
    result = ggk("validate", "--schema-dir", str(broken), str(SAMPLES / "iwmo" / "wmo301.xml"))
    assert result.returncode == 2 and "not an XML Schema" in result.stderr


@pytest.mark.slow
def test_usage_error_exits_2() -> None:
    assert ggk("validate").returncode == 2
    assert ggk("validate", "--max-size", "0", "x").returncode == 2


@pytest.mark.slow
def test_operator_commands_fail_cleanly(tmp_path: Path) -> None:
    """Wrong paths, non-XML input, a gateway that is not running: a sentence, exit 2."""
    result = ggk("init", "/proc/no/such/place")
    assert result.returncode == 2 and "cannot write the demo setup" in result.stderr
    assert "Traceback" not in result.stderr
    config = tmp_path / "demo" / "gateway.toml"
    assert ggk("init", str(tmp_path / "demo"), "--port", "1").returncode == 0
    again = ggk("init", str(tmp_path / "demo"))  # exists: kept, so the quick start runs twice
    assert again.returncode == 0 and "kept" in again.stdout
    checks = [
        ("routes", "check", "/etc/hostname"),
        ("status", "some-id"),
        ("submit", "--as", "0150", str(SAMPLES / "iwmo" / "wmo301.xml")),
        ("audit", "verify"),
        ("submit", "--as", "no-such-partner", str(SAMPLES / "iwmo" / "wmo301.xml")),
    ]
    for args in checks:
        result = ggk(*args, "--config", str(config))
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.startswith("Error:"), args
