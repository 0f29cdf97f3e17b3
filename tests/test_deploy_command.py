"""``wilson deploy``: the generic command and the Deployer interface's shared rules."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from wilson_core.cli import main
from wilson_core.interfaces import (
    DeployCheck,
    DeployConfig,
    Deployer,
    DeployError,
    DeployReport,
)


class _Copy(Deployer):
    """A real (trivial) deployer: copies config.json into the output folder."""

    quant_types = ("f32", "f16")

    def deploy(self, config: DeployConfig) -> DeployReport:
        out = self.prepare_out(config)
        target = out / "config.json"
        target.write_text((Path(config.model) / "config.json").read_text())
        return DeployReport(target="copy", out=str(out), files=[str(target)],
                            checks=[DeployCheck("copied", target.exists())])


def test_an_unknown_deployer_name_lists_the_available_ones(tmp_path, capsys):
    code = main(["deploy", "no-such-target", "--model", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert "Error: unknown name 'no-such-target' in wilson.deployers" in err
    assert "Traceback" not in err


def test_a_missing_model_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["deploy", "gguf", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "--model" in capsys.readouterr().err


def test_a_bad_option_is_a_clear_error(tmp_path, capsys):
    code = main(["deploy", "gguf", "--model", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--option", "novalue"])
    assert code == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_a_non_empty_output_folder_is_refused_without_force(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    config = DeployConfig(model=str(model), out=str(out))
    with pytest.raises(DeployError, match="not empty"):
        _Copy().deploy(config)
    assert (out / "keep.txt").read_text() == "precious"
    report = _Copy().deploy(attrs.evolve(config, force=True))
    assert report.passed and (out / "config.json").exists()
    assert (out / "keep.txt").read_text() == "precious"


def test_quant_names_are_checked_against_the_deployer_list(tmp_path):
    config = DeployConfig(model=str(tmp_path), out=str(tmp_path / "o"))
    assert _Copy().resolve_quant(config) == "f32"
    assert _Copy().resolve_quant(attrs.evolve(config, quant="F16")) == "f16"
    with pytest.raises(DeployError, match="choose one of: f32, f16"):
        _Copy().resolve_quant(attrs.evolve(config, quant="q2_k"))


def test_a_report_fails_when_any_check_fails():
    report = DeployReport(target="t", out="o", checks=[DeployCheck("a", True), DeployCheck("b", False)])
    assert not report.passed
    assert DeployReport(target="t", out="o").passed
