"""Node packages of plugins: installed on first use or by ``wilson setup`` into $WILSON_CACHE_DIR
(``npm ci --ignore-scripts``, a progress line, a clear error without Node or npm), through the
``wilson_node_packages`` hook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from wilson_core import hookimpl
from wilson_core.cli import main
from wilson_core.noderuntime import NodePackage, NodeRuntimeError, ensure
from wilson_core.plugins import plugin_manager

FIXTURE = Path(__file__).resolve().parent / "data" / "node_package"
needs_npm = pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                               reason="Node.js and npm are needed")


def tiny_package(tmp_path: Path) -> NodePackage:
    source = tmp_path / "plugin" / "node"
    shutil.copytree(FIXTURE, source)
    return NodePackage(name="wilson-test", source=source, marker="is-number", purpose="a test")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def registered(tmp_path):
    package = tiny_package(tmp_path)
    plugin = types.SimpleNamespace()

    @hookimpl
    def wilson_node_packages():
        return [package]

    plugin.wilson_node_packages = wilson_node_packages
    plugin_manager().register(plugin, name="node-fixture")
    try:
        yield package
    finally:
        plugin_manager().unregister(name="node-fixture")


@needs_npm
def test_wilson_setup_installs_a_declared_package_into_the_cache_once(registered, cache, capsys):
    assert main(["setup", "--check", "--json"]) == 0
    before = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert before["wilson-test"]["installed"] is False and before["wilson-test"]["problem"] is None
    assert {"wilson-gguf", "wilson-onnx"} <= set(before)  # the built-in plugins declare theirs

    assert main(["setup", "--json"]) == 0
    captured = capsys.readouterr()
    report = {e["name"]: e for e in json.loads(captured.out)}
    folder = Path(report["wilson-test"]["folder"])
    assert folder.parent == cache / "node" and folder.name.startswith("wilson-test-")
    assert "installing is-number for a test" in captured.err  # the progress line
    assert (folder / "node_modules" / "is-number").is_dir() and (folder / "check.mjs").is_file()
    ran = subprocess.run(["node", str(folder / "check.mjs")], capture_output=True, text=True, check=True)
    assert json.loads(ran.stdout) == {"ok": True}

    lines = []
    assert ensure(registered, say=lines.append) == folder and lines == []  # second time: nothing to do


@needs_npm
def test_an_updated_script_is_copied_without_reinstalling(tmp_path, cache):
    package = tiny_package(tmp_path)
    folder = ensure(package, say=lambda _: None)
    (package.source / "check.mjs").write_text('console.log("{\\"ok\\": \\"new\\"}");\n')
    lines = []
    assert ensure(package, say=lines.append) == folder and lines == []
    assert "new" in (folder / "check.mjs").read_text()


def _path_with(tmp_path: Path, *tools: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_without_node_the_error_says_to_install_it(tmp_path, cache, monkeypatch):
    package = tiny_package(tmp_path)
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    assert "Node.js 20 or later is needed" in package.problem()
    with pytest.raises(NodeRuntimeError, match="Node.js 20 or later is needed for a test"):
        ensure(package)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is needed")
def test_without_npm_the_error_says_to_install_it_and_the_cli_exits_non_zero(registered, cache, tmp_path,
                                                                             monkeypatch, capsys):
    monkeypatch.setenv("PATH", _path_with(tmp_path, "node"))
    assert "npm is needed" in registered.problem()
    assert main(["setup"]) == 1
    err = capsys.readouterr().err
    assert "npm is needed to install is-number for a test" in err and "Traceback" not in err


@needs_npm
def test_a_failing_npm_ci_is_a_clear_error_and_leaves_no_half_install(tmp_path, cache):
    package = tiny_package(tmp_path)
    lock = json.loads((package.source / "package-lock.json").read_text())
    lock["packages"]["node_modules/is-number"]["integrity"] = "sha512-" + "A" * 86 + "=="
    (package.source / "package-lock.json").write_text(json.dumps(lock))
    with pytest.raises(NodeRuntimeError, match="npm ci for wilson-test failed"):
        ensure(package, say=lambda _: None)
    assert not package.cache_folder().exists()
    assert [p for p in (cache / "node").iterdir()] == []


def test_an_override_folder_is_used_as_it_is(tmp_path, cache, monkeypatch):
    package = NodePackage(name="x", source=FIXTURE, marker="is-number", env_var="WILSON_TEST_NODE_DIR")
    ready = tmp_path / "ready"
    (ready / "node_modules" / "is-number").mkdir(parents=True)
    monkeypatch.setenv("WILSON_TEST_NODE_DIR", str(ready))
    assert package.folder() == ready
    if shutil.which("node"):
        assert ensure(package) == ready


def test_the_gguf_and_onnx_runtimes_point_inside_their_packages():
    gguf = pytest.importorskip("wilson_gguf.node_runtime").RUNTIME
    onnx = pytest.importorskip("wilson_onnx.node_runtime").RUNTIME
    assert (gguf.source / "runner.mjs").is_file() and gguf.marker == "node-llama-cpp"
    assert (onnx.source / "run.mjs").is_file() and onnx.npm_env["ONNXRUNTIME_NODE_INSTALL"] == "skip"
    assert os.path.basename(gguf.source.parent) == "wilson_gguf"


def test_the_demo_skips_node_checks_it_cannot_run_and_says_why(tmp_path, cache, monkeypatch):
    pytest.importorskip("wilson_gguf")
    pytest.importorskip("wilson_onnx")
    from wilson_core.demo.loop import _node_problem

    monkeypatch.setenv("PATH", _path_with(tmp_path))  # no node at all
    assert _node_problem() == "Node.js (node) is not on PATH"
    monkeypatch.undo()
    monkeypatch.setenv("WILSON_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "empty-runner"
    empty.mkdir()
    monkeypatch.setenv("WILSON_GGUF_RUNNER_DIR", str(empty))  # a folder without node-llama-cpp
    if shutil.which("node"):
        assert "node-llama-cpp is not installed" in _node_problem()
