"""Client code generated from our WSDLs by a real third-party generator (Apache CXF wsdl2java).

A partner generates its client from the official StUF-GGk WSDL and writes code against those
classes. ``tests/interop/cxf/src0210`` and ``src0310`` are such code, written against the classes
CXF generates from the official 0210 (patch 04) and 0310 WSDLs; here the same code must compile
against the classes CXF generates from *our* WSDLs. Where the official bundles are present
(``.official/ggk``, see tests/official.py) the generated type model is also compared component
by component (tests/stuf_interface.py).

Needs Maven and a JDK (javac); CI installs both (.ci/run), elsewhere the test skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from gateway.bundled import WSDL_GENERATIONS, ontvang_wsdl
from tests.official import ROOT
from tests.schema_mutations import VALUES, leaf_paths
from tests.stuf_interface import interface, services

CXF = ROOT / "tests" / "interop" / "cxf"
OFFICIAL_WSDLS = {
    "0210": "Ggk0210_patch_04-versie3/*/ggk0210/ggk0210/ggkberichten/"
    "ggk0210_OntvangAsynchroon_ggkberichten.wsdl",
    "0310": "Ggk0310_21_03/*/ggk0310_21/ggkberichten/ggk0310_OntvangAsynchroon.wsdl",
}


def _official_wsdl(generation: str) -> Path | None:
    found = sorted((ROOT / ".official" / "ggk").glob(OFFICIAL_WSDLS[generation]))
    return found[0] if found else None


def _tools() -> tuple[str, str]:
    mvn, javac = shutil.which("mvn"), shutil.which("javac")
    if mvn is None or javac is None:
        missing = "Maven" if mvn is None else "a JDK (javac)"
        if os.environ.get("CI"):
            pytest.fail(f"the CXF client test needs {missing} (.ci/run installs it)")
        pytest.skip(f"the CXF client test needs {missing}")
    return mvn, javac


def _run(args: list[str], cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


@pytest.fixture(scope="module")
def classpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    mvn, _ = _tools()
    out = tmp_path_factory.mktemp("cxf") / "classpath.txt"
    _run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(CXF / "pom.xml"),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={out}",
        ],
        CXF,
    )
    return out.read_text().strip()


@pytest.mark.slow
@pytest.mark.parametrize("generation", WSDL_GENERATIONS)
def test_partner_code_compiles_against_classes_generated_from_our_wsdl(
    generation: str, classpath: str, tmp_path: Path
) -> None:
    mvn, javac = _tools()
    generated = tmp_path / "generated"
    _run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(CXF / "pom.xml"),
            "generate-sources",
            f"-Dwsdl={ontvang_wsdl(generation)}",
            f"-Dgen.dir={generated}",
        ],
        CXF,
    )
    sources = sorted(str(p) for p in generated.rglob("*.java"))
    client = sorted(str(p) for p in (CXF / f"src{generation}").rglob("*.java"))
    assert sources and client
    classes = tmp_path / "classes"
    _run([javac, "-d", str(classes), "-cp", classpath, *sources, *client], tmp_path)
    assert (classes / "ggkclient" / "Client.class").is_file()


@pytest.mark.parametrize("generation", WSDL_GENERATIONS)
def test_our_wsdl_reaches_the_official_type_model(generation: str) -> None:
    official = _official_wsdl(generation)
    if official is None:
        pytest.skip("official StUF-GGk bundles absent (.official/ggk, see tests/official.py)")
    ours, theirs = interface(ontvang_wsdl(generation)), interface(official)
    assert ours.components == theirs.components
    differing = sorted(c for c in ours.components if ours.canonical[c] != theirs.canonical[c])
    assert not differing
    assert services(ontvang_wsdl(generation)) == services(official)


# generation: (our envelope XSD, the official one beside the official WSDL, sample envelopes)
ENVELOPE_SAMPLES = {
    "0210": (
        "ggk0210/ggk0210_msg.xsd",
        "ggk0210_msg_ggkberichten.xsd",
        ["di01-wmo301-ggk0210.xml", "du01-wmo302-ggk0210.xml"],
    ),
    "0310": ("ggk0310/ggk0310_msg.xsd", "ggk0310_msg.xsd", ["di01-jw315-ggk0310.xml"]),
}


@pytest.mark.parametrize("generation", WSDL_GENERATIONS)
def test_our_envelope_xsds_give_the_official_verdicts(generation: str) -> None:
    """Every leaf of the sample envelopes with every probe value: valid for our envelope XSD
    exactly when valid for the official one."""
    official = _official_wsdl(generation)
    if official is None:
        pytest.skip("official StUF-GGk bundles absent (.official/ggk, see tests/official.py)")
    ours_file, theirs_file, samples = ENVELOPE_SAMPLES[generation]
    theirs = etree.XMLSchema(etree.parse(str(official.parent / theirs_file)))
    ours = etree.XMLSchema(etree.parse(str(ontvang_wsdl(generation).parent.parent / ours_file)))
    probes = 0
    for name in samples:
        tree = etree.parse(str(ROOT / "samples" / "envelopes" / name))
        for _, leaf in list(leaf_paths(tree.getroot())):
            original = leaf.text
            for value in VALUES.values():
                leaf.text = value
                probes += 1
                assert theirs.validate(tree) == ours.validate(tree), (name, leaf.tag, value)
            leaf.text = original
    assert probes > 200
