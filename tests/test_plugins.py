"""Plugin loading: hooks through pluggy, drivers through stevedore, broken plugins skipped."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import types

import pytest

import wilson_core
from wilson_core import hookspecs, plugins
from wilson_core.errors import PluginError
from wilson_core.interfaces import EXPORTERS, PROVIDERS
from wilson_core.store import sink


def write_distribution(site, name, entry_points: dict[str, dict[str, str]]):
    """A throwaway installed distribution (a dist-info folder) declaring entry points."""
    info = site / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager rebuilt for the test (and again afterwards, without its changes)."""
    plugins.plugin_manager.cache_clear()
    yield
    plugins.plugin_manager.cache_clear()
    sink.forget_stores()


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_a_registered_plugin_receives_every_capture_and_can_be_unregistered(tmp_path, monkeypatch):
    monkeypatch.setenv("WILSON_SPOOL_DIR", str(tmp_path / "spool"))
    seen = []
    fixture_plugin = types.SimpleNamespace()

    @wilson_core.hookimpl
    def wilson_capture_interaction(interaction):
        seen.append(interaction.response_content)

    fixture_plugin.wilson_capture_interaction = wilson_capture_interaction
    pm = plugins.plugin_manager()
    pm.register(fixture_plugin, name="fixture-plugin")
    try:
        llm = wilson_core.LLM("scripted:m", db=str(tmp_path / "d.db"), script=["one", "two"])
        llm.chat([{"role": "user", "content": "a"}])
        assert seen == ["one"]
        names = [h["name"] for h in plugins.describe_plugins()["hooks"]]
        assert "fixture-plugin" in names and "sqlite_sink" in names
    finally:
        pm.unregister(name="fixture-plugin")
    llm.chat([{"role": "user", "content": "b"}])
    assert seen == ["one"]
    assert wilson_core.open_store(tmp_path / "d.db").count() == 2
    sink.forget_stores()


def test_a_broken_plugin_is_warned_about_and_skipped(site, fresh_plugins, monkeypatch, caplog):
    monkeypatch.delenv("WILSON_STRICT_PLUGINS", raising=False)
    write_distribution(site, "wilson-broken", {"wilson": {"broken": "no_such_module_for_wilson"}})
    with caplog.at_level("WARNING", logger="wilson"):
        pm = plugins.plugin_manager()
    [message] = [r.getMessage() for r in caplog.records if r.name == "wilson.plugins"]
    assert "broken" in message and "wilson-broken 1.2.3" in message and "skipped" in message
    assert pm.get_plugin("broken") is None
    assert pm.get_plugin("sqlite_sink") is not None  # the others still load


def test_strict_plugins_make_a_broken_plugin_fatal(site, fresh_plugins, monkeypatch):
    monkeypatch.setenv("WILSON_STRICT_PLUGINS", "1")
    write_distribution(site, "wilson-broken", {"wilson": {"broken": "no_such_module_for_wilson"}})
    with pytest.raises(PluginError, match="wilson-broken.*WILSON_STRICT_PLUGINS"):
        plugins.plugin_manager()


def test_a_plugin_with_an_unknown_hook_is_rejected(site, fresh_plugins, monkeypatch, caplog):
    monkeypatch.delenv("WILSON_STRICT_PLUGINS", raising=False)
    (site / "wilson_typo_plugin.py").write_text(
        "import wilson_core\n\n@wilson_core.hookimpl\ndef wilson_capture_interactoin(interaction):\n    pass\n"
    )
    write_distribution(site, "wilson-typo", {"wilson": {"typo": "wilson_typo_plugin"}})
    with caplog.at_level("WARNING", logger="wilson"):
        pm = plugins.plugin_manager()
    assert any("typo" in r.getMessage() for r in caplog.records if r.name == "wilson.plugins")
    assert pm.get_plugin("typo") is None


def test_a_driver_is_found_by_name_from_a_third_party_distribution(site, fresh_plugins):
    (site / "wilson_echo_provider.py").write_text(
        "from wilson_core.interfaces import Provider\n"
        "from wilson_core.records import ProviderResponse\n\n"
        "class Echo(Provider):\n"
        "    def chat(self, messages, tools, params):\n"
        "        return ProviderResponse(content=messages[-1]['content'])\n"
    )
    write_distribution(site, "wilson-echo", {PROVIDERS: {"echo": "wilson_echo_provider:Echo"}})
    assert "echo" in plugins.driver_names(PROVIDERS)
    llm = wilson_core.LLM("echo:any", capture=False)
    assert llm.chat([{"role": "user", "content": "ping"}]).text == "ping"


def test_a_broken_driver_asked_for_by_name_fails_with_its_distribution(site, fresh_plugins):
    write_distribution(site, "wilson-bad-driver", {PROVIDERS: {"bad": "no_such_module_for_wilson:X"}})
    with pytest.raises(
        PluginError, match=r"'bad'.*wilson-bad-driver 1\.2\.3.*failed to load.*available: .*scripted"
    ):
        wilson_core.LLM("bad:model")


def test_an_unknown_driver_name_lists_the_available_names():
    with pytest.raises(PluginError, match="available: .*scripted"):
        plugins.load_driver(PROVIDERS, "no-such-driver")
    with pytest.raises(PluginError, match=EXPORTERS):
        plugins.load_driver(EXPORTERS, "no-such-format")


def test_listing_drivers_imports_none_of_them():
    code = (
        "import sys; from wilson_core import plugins\n"
        "names = plugins.driver_names('wilson.providers')\n"
        "assert 'openai' in names, names\n"
        "print([m for m in ('wilson_core.providers.openai', 'wilson_core.providers.ollama') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_wilson_plugins_json_lists_hooks_and_drivers_with_distributions():
    out = subprocess.run(
        [sys.executable, "-m", "wilson_core.cli", "plugins", "--json"],
        capture_output=True, text=True, check=True,
    )
    data = json.loads(out.stdout)
    sqlite = next(h for h in data["hooks"] if h["name"] == "sqlite_sink")
    assert sqlite["distribution"] == "wilson-core" and sqlite["version"]
    assert "wilson_capture_interaction" in sqlite["hooks"]
    providers = {d["name"]: d for d in data["drivers"][PROVIDERS]}
    assert providers["openai"]["target"] == "wilson_core.providers.openai:OpenAIProvider"
    assert providers["scripted"]["distribution"] == "wilson-core"


HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
         if name.startswith("wilson_")]


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_documents_each_argument_and_its_return(name):
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    for argument in inspect.signature(spec).parameters:
        assert f":param {argument}:" in doc, f"{name} does not document {argument}"
    assert ":return:" in doc, f"{name} does not say what it returns"


def test_warnings_from_plugins_do_not_stop_the_cli(site, fresh_plugins, monkeypatch, tmp_path):
    monkeypatch.delenv("WILSON_STRICT_PLUGINS", raising=False)
    write_distribution(site, "wilson-broken", {"wilson": {"broken": "no_such_module_for_wilson"}})
    env = {**__import__("os").environ, "PYTHONPATH": str(site), "WILSON_DB": str(tmp_path / "d.db")}
    env.pop("WILSON_STRICT_PLUGINS", None)
    out = subprocess.run([sys.executable, "-m", "wilson_core.cli", "plugins"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "broken" in out.stderr and "sqlite_sink" in out.stdout
