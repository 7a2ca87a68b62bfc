"""What an operator runs on (issue #15.3): the metrics exist with closed label sets and
sensible values, and every metric the alert rules and the dashboard use is one the gateway
exports; the alert rules pass promtool."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kit.gateway import Setup, Sink, eventually, make_setup, rest, running
from tests.conftest import ROOT, SAMPLES

OPS = ROOT / "docs" / "ops"


def exported(text: bytes) -> dict[str, list[tuple[str, float]]]:
    """metric name → [(labels, value)] from a Prometheus text exposition."""
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        found = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        assert found, line
        out.setdefault(found.group(1), []).append((found.group(2) or "", float(found.group(3))))
    return out


@pytest.mark.slow
async def test_operator_metrics_from_a_live_gateway(tmp_path: Path, sink: Sink) -> None:
    setup = make_setup(tmp_path / "gw", sink.port, max_attempts=1)
    sink.fail_next, sink.fail_with = 1, "fo03-client"
    async with running(setup):
        token = setup.token("0150")
        status, _ = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=token,
            data=(SAMPLES / "iwmo" / "wmo301.xml").read_bytes(),
        )
        assert status == 202
        await rest(setup, "GET", "/api/v1/inbox")  # a refusal before identification: 401
        await eventually(lambda: sink.requests_seen >= 1)
        await eventually(lambda: _dead(setup))
        status, body = await rest(setup, "GET", "/metrics", token=setup.token())
    assert status == 200
    metrics = exported(body)
    partners = {"0150", "0175", "0177", "12345678", "87654321", "CAK", "SVB", "CORV"}
    depth = {re.search(r'destination="([^"]+)"', k).group(1) for k, _ in metrics["ggk_queue_depth"]}  # type: ignore[union-attr]
    assert depth == partners  # every configured partner, present at 0 when idle
    assert ('{destination="12345678"}', 1.0) in metrics["ggk_dead_letters"]
    # counters are per process (other in-process tests add to them): at least this one
    assert dict(metrics["ggk_delivery_failures_total"])['{class="fo03"}'] >= 1
    assert any('status="401"' in k and v >= 1 for k, v in metrics["ggk_http_refusals_total"])
    assert metrics["ggk_store_bytes"][0][1] > 0
    assert 0 <= metrics["ggk_audit_checkpoint_age_seconds"][0][1] < 60  # signed at start
    assert metrics["ggk_delivery_attempt_seconds_count"][0][1] >= 1
    assert "ggk_build_info" in metrics and "ggk_overdue_retours" in metrics


async def _dead(setup: Setup) -> bool:
    status, body = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=setup.token())
    return status == 200 and bool(body["dead_letters"])


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    from gateway.metrics import REGISTRY

    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    names.add("up")
    used = set(re.findall(r"\b(ggk_[a-z_]+|up)\b", (OPS / "alerts.yml").read_text()))
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"\b(ggk_[a-z_]+)\b", target["expr"]))
    assert used - names == set()


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (.ci/run installs the prometheus package)")
        pytest.skip("promtool (Debian package prometheus) is not installed")
    done = subprocess.run(
        [promtool, "check", "rules", str(OPS / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 14 rules found" in done.stdout
