"""The wheel works on its own: built from this tree, installed in a fresh virtual environment
and used from a folder outside the repository, it validates, lists its schemas, serves the
WSDL and accepts a message (issue #14.1). No network: the wheel is built without isolation
and installed without dependencies, which the fresh environment borrows from this one."""

from __future__ import annotations

import asyncio
import json
import os
import site
import ssl
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import aiohttp
import pytest

from kit.harness import free_port
from tests.conftest import ROOT, SAMPLES

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed (dependencies borrowed via a .pth file)."""
    work = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--no-isolation",
        "--outdir",
        work / "dist",
        ROOT,
        cwd=work,
    )
    wheels = list((work / "dist").glob("ggk_gateway-*.whl"))
    assert len(wheels) == 1
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    purelib = Path(
        sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    )
    # The dependencies of this environment, appended after the fresh one's own packages. A
    # directory named in a .pth file is added as it is: the editable install's finder (a .pth
    # of its own there) is not run, so `gateway` can only come from the wheel.
    (purelib / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        "--target",
        purelib,
        wheels[0],
        cwd=work,
    )
    return env_dir


def test_wheel_holds_the_schemas_and_validates_outside_the_tree(
    installed: Path, tmp_path: Path
) -> None:
    python = installed / "bin" / "python"
    where = run(python, "-c", "import gateway, ggk_schemas; print(gateway.__file__)", cwd=tmp_path)
    assert str(installed) in where and str(ROOT) not in where
    message = tmp_path / "wmo301.xml"
    message.write_bytes((SAMPLES / "iwmo" / "wmo301.xml").read_bytes())
    out = run(python, "-m", "cli", "validate", message, cwd=tmp_path)
    assert "1 valid, 0 invalid" in out
    listing = run(python, "-m", "cli", "schemas", "list", cwd=tmp_path)
    assert listing.count("iwmo") >= 14 and listing.count("ijw") >= 14


def test_wheel_holds_the_code_lists(installed: Path, tmp_path: Path) -> None:
    """The code lists are package data: every bundled list is in the wheel and read from it."""
    python = installed / "bin" / "python"
    shipped = sorted(p.name for p in (ROOT / "gateway/codelists/data").glob("*.json"))
    out = run(
        python,
        "-c",
        "import json; from importlib import resources; from gateway.codelists import codelists;"
        "d = resources.files('gateway.codelists') / 'data';"
        "print(json.dumps([str(d), sorted(p.name for p in d.iterdir()),"
        " codelists().name('iwmo-WMO020', '01')]))",
        cwd=tmp_path,
    )
    folder, names, name = json.loads(out)
    assert str(installed) in folder and str(ROOT) not in folder
    assert names == shipped and len(names) >= 50
    assert name == "Hulp bij het huishouden"
    listing = run(python, "-m", "cli", "codelists", "show", "gemeentecodes", cwd=tmp_path)
    assert "0150     Deventer" in listing


async def test_wheel_serves_outside_the_tree(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    port = free_port()
    run(python, "-m", "cli", "init", "demo", "--port", str(port), cwd=tmp_path)
    log = (tmp_path / "serve.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(python),
        "-m",
        "cli",
        "serve",
        "--config",
        "demo/gateway.toml",
        cwd=tmp_path,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"https://127.0.0.1:{port}/ggk/OntvangAsynchroon?wsdl"
        ssl_ca = str(tmp_path / "demo" / "pki" / "ca.crt")
        context = ssl.create_default_context(cafile=ssl_ca)
        body = b""
        for _ in range(300):
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url, ssl=context) as response,
                ):
                    assert response.status == 200
                    body = await response.read()
                    break
            except aiohttp.ClientConnectorError:
                assert process.returncode is None, (tmp_path / "serve.log").read_text()
                await asyncio.sleep(0.1)
        assert b"OntvangAsynchroon" in body and f":{port}/ggk/OntvangAsynchroon".encode() in body
        # the portal's English catalogue came with the wheel (compiled at start)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"https://127.0.0.1:{port}/portal/signin",
                ssl=context,
                headers={"Accept-Language": "en"},
            ) as page,
        ):
            assert "<h1>Sign in</h1>" in await page.text()
        submitted = await asyncio.to_thread(
            run,
            python,
            "-m",
            "cli",
            "submit",
            "--as",
            "0150",
            "--config",
            "demo/gateway.toml",
            SAMPLES / "iwmo" / "wmo301.xml",
            cwd=tmp_path,
        )
        assert "accepted" in submitted.lower(), submitted
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
        log.close()


def test_without_its_schemas_the_gateway_refuses_to_start(installed: Path, tmp_path: Path) -> None:
    """Runs last in this module: it takes the schemas out of the installed wheel."""
    python = installed / "bin" / "python"
    run(python, "-m", "cli", "init", "demo", "--port", str(free_port()), cwd=tmp_path)
    purelib = Path(
        sysconfig.get_path("purelib", vars={"base": str(installed), "platbase": str(installed)})
    )
    (purelib / "ggk_schemas").rename(purelib / "ggk_schemas.removed")
    done = subprocess.run(
        [str(python), "-m", "cli", "serve", "--config", "demo/gateway.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "bundled schemas" in done.stderr and "Traceback" not in done.stderr
