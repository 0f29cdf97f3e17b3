"""The built wheels, installed as a user installs them: a fresh virtual environment, no
source tree on the path, then ``wilson demo --fast`` from them with every stage passing.

It builds every distribution's wheel (what ``nox -s wheels`` does), checks what each
carries (license, readme, ``py.typed``, the bounded core dependency, the Node runner
files), installs ``wilson-core`` alone (``wilson export sft`` then names the
distribution to install), then every plugin, and runs the demo.  The Node packages
are installed on first use into a fresh ``$WILSON_CACHE_DIR``.  pip's cache and the
torch wheel pinned by ``constraints.txt`` keep it to a few minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ["wilson-exporters", "wilson-dashboard", "wilson-train", "wilson-gguf", "wilson-ollama", "wilson-onnx",
           "wilson-proxy"]
pytestmark = [pytest.mark.slow, pytest.mark.wheels]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800,
        check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, (args, done.stdout[-4000:], done.stderr[-4000:])
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    for project in [ROOT, *(ROOT / "plugins" / name for name in PLUGINS)]:
        # a copy, so the build leaves nothing in the checkout
        copy = build / project.name
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns(
            "node_modules", "*.egg-info", "build", "tests", "plugins", "docs", "bench", ".nox", "__pycache__"))
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, copy,
            cwd=build, timeout=600)
    return dist


def wheel_of(dist: Path, name: str) -> zipfile.ZipFile:
    [path] = dist.glob(name.replace("-", "_") + "-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.parametrize("name", ["wilson-core", *PLUGINS])
def test_each_wheel_carries_what_it_needs(wheels, name):
    files = wheel_of(wheels, name).namelist()
    package = name.replace("-", "_")
    assert f"{package}/py.typed" in files
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files)
    metadata = wheel_of(wheels, name).read(next(f for f in files if f.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata and "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: Changelog" in metadata
    assert ("# Wilson" if name == "wilson-core" else f"# {name}") in metadata  # the readme
    if name != "wilson-core":
        assert "Requires-Dist: wilson-core<0.2,>=0.1" in metadata
    node = {"wilson-gguf": ["runner.mjs", "package.json", "package-lock.json"],
            "wilson-onnx": ["run.mjs", "package.json", "package-lock.json"]}.get(name, [])
    for file in node:
        assert f"{package}/node/{file}" in files, file
    assert not any("node_modules" in f for f in files)


def test_the_wheels_install_into_a_fresh_environment_and_run_the_demo(wheels, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, wilson = venv / "bin" / "python", venv / "bin" / "wilson"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "WILSON_DB", "WILSON_STRICT_PLUGINS")}
    env.update({"WILSON_CACHE_DIR": str(tmp_path / "cache"), "HOME": os.environ.get("HOME", str(tmp_path))})
    pip = [python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", "--find-links", wheels]

    # wilson-core alone: small, and an export names the distribution that provides the format
    run(*pip, "wilson-core", cwd=tmp_path, env=env, timeout=900)
    where = run(python, "-c", "import wilson_core, sys; print(wilson_core.__file__); print(sys.path)",
                cwd=tmp_path, env=env).stdout
    assert str(venv) in where.splitlines()[0] and str(ROOT) not in where
    assert "torch" not in run(python, "-m", "pip", "list", cwd=tmp_path, env=env).stdout
    missing = run(wilson, "--db", tmp_path / "d.db", "export", "sft", "--out", tmp_path / "x.jsonl",
                  cwd=tmp_path, env=env, check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "pip install wilson-exporters" in missing.stderr and "wilson install wilson-exporters" in missing.stderr

    # every plugin, as `wilson install` does it (pip in this environment)
    run(wilson, "install", "-c", ROOT / "constraints.txt", "--find-links", wheels, "wilson-core[openai]", *PLUGINS,
        cwd=tmp_path, env=env, timeout=1800)
    listed = json.loads(run(wilson, "plugins", "--json", cwd=tmp_path, env=env).stdout)
    assert "sft" in json.dumps(listed) and "transformersjs" in json.dumps(listed)
    assert "alpaca" not in json.dumps(listed)  # the docs' example plugin is not part of an install

    out = tmp_path / "demo"
    demo = run(wilson, "demo", "--fast", "--out", out, cwd=tmp_path, env=env, timeout=3000, check=False)
    assert demo.returncode == 0, (demo.stdout[-6000:], demo.stderr[-6000:])
    assert "Traceback" not in demo.stderr
    summary = json.loads((out / "demo-summary.json").read_text())
    for stage in ("capture", "annotate", "export", "base model", "train", "evaluate", "deploy", "switch"):
        assert stage in summary["timings"], stage
    for target, record in summary["deploy"].items():
        assert record["passed"], (target, record)
    cards = list((out / "deploy").glob("*/README.md"))
    assert cards and all(c.read_text().startswith("---\n") for c in cards)  # a model card per deployment
    assert "library_name: \"peft\"" in (out / "model" / "README.md").read_text()  # the training card
    if shutil.which("node") and shutil.which("npm"):
        # the Node packages were installed on first use into the cache, with a progress line
        assert any((tmp_path / "cache" / "node").glob("wilson-gguf-*/node_modules/node-llama-cpp"))
        assert "installing node-llama-cpp" in demo.stderr + demo.stdout
        assert summary["deploy"]["gguf"]["checks"] and all(summary["deploy"]["gguf"]["checks"].values())
