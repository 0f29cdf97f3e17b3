"""Every hook is documented with its exact signature and exercised by a test (datasette's rule).

The first two tests read ``wilson_core/hookspecs.py``; the others are the
tests of hooks that no stage-specific test file covers yet: each registers a
fixture plugin, drives the real code path and unregisters it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import click
import pytest

from wilson_core import hookimpl
from wilson_core.plugins import plugin_manager

ROOT = Path(__file__).resolve().parent.parent
HOOKSPECS = ROOT / "wilson_core" / "hookspecs.py"
PLUGIN_GUIDE = ROOT / "docs" / "plugins.md"


def hookspec_signatures() -> dict[str, str]:
    """``name -> "name(arguments) -> return"`` for every ``@hookspec`` function, from the source."""
    tree = ast.parse(HOOKSPECS.read_text(encoding="utf-8"))
    signatures = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "hookspec" for d in node.decorator_list
        ):
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            signatures[node.name] = f"{node.name}({ast.unparse(node.args)}){returns}"
    return signatures


def squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_hookspecs_are_found():
    assert {"wilson_capture_interaction", "wilson_redaction_rules", "wilson_register_commands"} <= set(
        hookspec_signatures()
    )


@pytest.mark.parametrize("name", sorted(hookspec_signatures()))
def test_every_hook_is_documented_with_its_exact_signature(name):
    guide = squeeze(PLUGIN_GUIDE.read_text(encoding="utf-8"))
    signature = hookspec_signatures()[name]
    assert squeeze(signature) in guide, f"docs/plugins.md must show `{signature}`"


def all_test_files() -> list[Path]:
    paths = list((ROOT / "tests").rglob("test_*.py"))
    paths += list(ROOT.glob("plugins/*/tests/**/test_*.py"))
    paths += list(ROOT.glob("docs/examples/*/tests/**/test_*.py"))
    return paths


@pytest.mark.parametrize("name", sorted(hookspec_signatures()))
def test_every_hook_is_named_in_a_test(name):
    pattern = re.compile(rf"\b{name}\b")
    assert any(pattern.search(path.read_text(encoding="utf-8")) for path in all_test_files()), (
        f"no test file mentions {name}"
    )


# -- tests of hooks not covered elsewhere -----------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    @hookimpl
    def wilson_run_started(self, run, db_path):
        self.events.append(("started", run.id, db_path))

    @hookimpl
    def wilson_run_finished(self, run, error, db_path):
        self.events.append(("finished", run.id, run.ended_at is not None, type(error).__name__))

    @hookimpl
    def wilson_capture_tool_result(self, tool_result, db_path):
        self.events.append(("tool_result", tool_result.name, tool_result.content, tool_result.interaction_id))

    @hookimpl
    def wilson_annotation_sources(self):
        return [{"name": "fixture-csv", "kind": "import", "description": "labels from a CSV"}]

    @hookimpl
    def wilson_register_commands(self, cli):
        @cli.command("fixture-hello")
        def hello():
            click.echo("hello from a plugin command")


@pytest.fixture()
def recorder():
    pm = plugin_manager()
    plugin = Recorder()
    pm.register(plugin, name="fixture-recorder")
    yield plugin
    pm.unregister(name="fixture-recorder")


def test_runs_and_tool_results_reach_every_plugin(recorder, tmp_path):
    from wilson_core import LLM, open_store

    db = tmp_path / "w.db"
    llm = LLM("scripted:demo", db=str(db), script=[
        {"content": None, "tool_calls": [{"id": "c1", "name": "get_balance", "arguments": {"account": "checking"}}]},
    ])
    with pytest.raises(RuntimeError), llm.run(call_type="agent") as run:
        reply = run.chat([{"role": "user", "content": "balance?"}])
        run.record_tool_result(reply.tool_calls[0], {"balance": 42})
        raise RuntimeError("the app failed after the tool call")
    started, tool_result, finished = recorder.events
    assert started == ("started", run.id, str(db))
    assert tool_result == ("tool_result", "get_balance", json.dumps({"balance": 42}), reply.interaction_id)
    assert finished == ("finished", run.id, True, "RuntimeError")
    assert open_store(db).tool_results(reply.interaction_id)[0].content == '{"balance": 42}'


def test_annotation_sources_from_every_plugin_are_concatenated(recorder):
    sources = [s for group in plugin_manager().hook.wilson_annotation_sources() for s in group]
    assert {"name": "fixture-csv", "kind": "import", "description": "labels from a CSV"} in sources


def test_plugins_can_add_cli_commands(recorder, capsys):
    from wilson_core.cli import cli, main

    try:
        assert main(["fixture-hello"]) == 0
        assert capsys.readouterr().out == "hello from a plugin command\n"
    finally:
        cli.commands.pop("fixture-hello", None)
