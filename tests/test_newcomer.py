"""A newcomer's rough edges: the commands the demo prints run as printed (nox's environment
is not on PATH), library noise a user cannot act on is filtered, the demo environment is
installed as a user installs Wilson."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_printed_commands_name_the_environments_wilson(monkeypatch, capsys):
    from wilson_core.cli._common import wilson_command
    from wilson_core.demo.loop import _wilson

    monkeypatch.delenv("WILSON_COMMAND", raising=False)
    assert wilson_command() == "wilson"
    monkeypatch.setenv("WILSON_COMMAND", "/home/me/my project/.nox/demo/bin/wilson")
    assert wilson_command() == "'/home/me/my project/.nox/demo/bin/wilson'"  # quoted for the shell
    _wilson("plugins", "--json")
    assert "$ '/home/me/my project/.nox/demo/bin/wilson' plugins --json" in capsys.readouterr().out


def test_nox_demo_sets_it_and_installs_no_test_dependencies():
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    demo = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "demo")
    source = ast.unparse(demo)
    assert "WILSON_COMMAND" in source and "session.bin" in source
    assert "TEST_DEPS" not in source and "EXAMPLES" not in source and "[test]" not in source
    assert "install_everything" not in source


def test_library_warnings_nobody_can_act_on_are_filtered_and_others_kept():
    pytest.importorskip("wilson_train")
    import wilson_train  # noqa: F401 - installs the filters

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        import importlib

        importlib.reload(wilson_train)  # the filters go in front of "default"
        warnings.warn("`past_key_values` is deprecated and will be removed in version 5.40.0 for "
                      "`create_causal_mask`. Use `cache` instead.", FutureWarning, stacklevel=2)
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning, stacklevel=2)
        warnings.warn("Could not find a config file in /tmp/base - will assume that the vocabulary was "
                      "not modified.", UserWarning, stacklevel=2)
        warnings.warn("something a user should see", FutureWarning, stacklevel=2)
    assert [str(w.message) for w in caught] == ["something a user should see"]
