"""Release hygiene of every distribution: one version, bounded core, license, readme, py.typed,
classifiers, URLs, and the Node runner files declared as package data."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = [ROOT, *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))]


def load(project: Path) -> dict:
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))


CORE_VERSION = load(ROOT)["project"]["version"]


def package_dir(project: Path) -> Path:
    name = load(project)["project"]["name"].replace("-", "_")
    return project / name


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_every_distribution_is_release_ready(project):
    meta = load(project)["project"]
    assert meta["version"] == CORE_VERSION, "one version for every distribution (nox -s version)"
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    assert (project / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert (project / meta["readme"]).is_file()
    assert "Typing :: Typed" in meta["classifiers"]
    assert any(c.startswith("Development Status") for c in meta["classifiers"])
    assert {"Homepage", "Source", "Changelog"} <= set(meta["urls"])
    assert (package_dir(project) / "py.typed").is_file()
    data = load(project)["tool"]["setuptools"]["package-data"][package_dir(project).name]
    assert "py.typed" in data


@pytest.mark.parametrize("project", PROJECTS[1:], ids=lambda p: p.name)
def test_plugins_bind_the_core_minor_version(project):
    major, minor = (int(x) for x in CORE_VERSION.split(".")[:2])
    bound = f">={major}.{minor},<{major}.{minor + 1}"
    meta = load(project)["project"]
    wilson_deps = [d for d in meta["dependencies"] + sum(meta.get("optional-dependencies", {}).values(), [])
                   if re.match(r"wilson-[a-z]+", d)]
    assert any(d.startswith("wilson-core") for d in meta["dependencies"])
    for dep in wilson_deps:
        assert dep.endswith(bound), dep


@pytest.mark.parametrize(("plugin", "files"), [
    ("wilson-gguf", ["runner.mjs", "package.json", "package-lock.json"]),
    ("wilson-onnx", ["run.mjs", "package.json", "package-lock.json"]),
])
def test_node_runner_files_are_package_data(plugin, files):
    project = ROOT / "plugins" / plugin
    data = load(project)["tool"]["setuptools"]["package-data"][package_dir(project).name]
    for name in files:
        assert (package_dir(project) / "node" / name).is_file()
        assert any(Path("node", name).match(pattern) for pattern in data), name


def test_versions_come_from_the_metadata_not_from_literals():
    for init in [ROOT / "wilson_core" / "__init__.py", *ROOT.glob("plugins/*/wilson_*/__init__.py")]:
        assert not re.search(r'^__version__ = "', init.read_text(), re.M), init


def test_the_changelog_and_the_license_reason_are_there():
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Apache-2.0" in (ROOT / "README.md").read_text()


@pytest.mark.skipif(shutil.which("nox") is None, reason="nox is not installed")
def test_the_version_session_moves_every_version_and_bound_together(tmp_path):
    """`nox -s version -- X.Y.Z` on a copy of the tree: afterwards the checks above hold for X.Y.Z."""
    shutil.copy(ROOT / "noxfile.py", tmp_path)
    for project in PROJECTS:
        target = tmp_path / project.relative_to(ROOT)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(project / "pyproject.toml", target)
    run = subprocess.run(["nox", "-f", str(tmp_path / "noxfile.py"), "-s", "version", "--", "0.7.3"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for project in PROJECTS:
        meta = tomllib.loads((tmp_path / project.relative_to(ROOT) / "pyproject.toml").read_text(encoding="utf-8"))
        assert meta["project"]["version"] == "0.7.3"
        deps = meta["project"]["dependencies"] + sum(meta["project"].get("optional-dependencies", {}).values(), [])
        for dep in (d for d in deps if re.match(r"wilson-[a-z]+", d)):
            assert dep.endswith(">=0.7,<0.8"), (project.name, dep)
