"""Model cards: YAML front matter that Hugging Face's own parser reads, the eval table,
and the card ``wilson deploy`` writes for every deployment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wilson_core.interfaces import DeployCheck, DeployConfig, Deployer, DeployReport
from wilson_core.modelcard import (
    dataset_ids,
    front_matter,
    split_front_matter,
    training_meta,
    update_eval_section,
    with_eval_section,
)

yaml = pytest.importorskip("yaml")

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(st.dictionaries(st.from_regex(r"[A-Za-z_]{1,10}", fullmatch=True),
                       st.one_of(text, st.integers(), st.booleans(), st.lists(text, min_size=1, max_size=3)),
                       min_size=1, max_size=5))
# keys YAML 1.1 reads as a boolean or null unless quoted (hypothesis found "no" in CI)
@example({"no": "", "Yes": 1, "ON": True, "off": [""], "y": "x", "N": 0, "null": "", "True": "", "FALSE": ""})
def test_front_matter_is_yaml_that_reads_back_the_same(meta):
    yaml_text, body = split_front_matter(front_matter(meta) + "\n# body\n")
    assert yaml.safe_load(yaml_text) == meta and body == "\n# body\n"


def test_training_meta_names_the_export_by_its_manifest_hash(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("{}\n")
    (tmp_path / "sft.jsonl.manifest.json").write_text(json.dumps(
        {"files": {"train": {"path": "sft.jsonl", "sha256": "ab12"}}}))
    meta = training_meta(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", trainer="lora-sft",
                         data_files=[str(data), None], settings={"r": 16, "lr": 2e-4})
    assert meta["datasets"] == ["wilson-export:sft.jsonl@sha256:ab12"] == dataset_ids([data])
    card = tmp_path / "README.md"
    card.write_text(front_matter(meta) + "\n# card\n")
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(card).data.to_dict()
    assert loaded["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert loaded["library_name"] == "peft" and "lora" in loaded["tags"] and "sft" in loaded["tags"]
    assert loaded["datasets"] == ["wilson-export:sft.jsonl@sha256:ab12"]
    assert loaded["wilson"]["r"] == 16


REPORT = {"models": {"base": {"exact_match": 0.25, "token_f1": 0.5, "examples": 8},
                     "tuned": {"exact_match": 0.75, "token_f1": 0.9, "examples": 8}}}


def test_the_eval_table_is_added_then_replaced_not_repeated(tmp_path):
    card = front_matter({"library_name": "peft"}) + "\n# run\n\n## Metrics\n\n| a | b |\n"
    once = with_eval_section(card, REPORT, data=["heldout.jsonl"])
    assert "| all | exact_match | 0.25 | 0.75 | 0.5 |" in once and "`heldout.jsonl`" in once
    twice = with_eval_section(once, {"models": {"base": {"exact_match": 0.1}, "tuned": {"exact_match": 0.2}}})
    assert twice.count("## Evaluation") == 1 and "0.75" not in twice and "## Metrics" in twice
    (tmp_path / "run" / "merged").mkdir(parents=True)
    (tmp_path / "run" / "README.md").write_text(card)
    assert update_eval_section(tmp_path / "run" / "merged", REPORT) == tmp_path / "run" / "README.md"
    assert "## Evaluation" in (tmp_path / "run" / "README.md").read_text()


class _Copy(Deployer):
    """A real (trivial) deployer: copies config.json into the output folder."""

    def deploy(self, config: DeployConfig) -> DeployReport:
        out = self.prepare_out(config)
        target = out / "config.json"
        target.write_text((Path(config.model) / "config.json").read_text())
        return DeployReport(target="gguf", out=str(out), files=[str(target)], provider=f"llamacpp:{target}",
                            checks=[DeployCheck("copied", target.exists(), "same bytes")])


def test_a_deployment_gets_a_card_from_its_report_and_the_training_card(tmp_path):
    from wilson_core.modelcard import write_deployment_card

    run = tmp_path / "run"
    (run / "merged").mkdir(parents=True)
    (run / "merged" / "config.json").write_text("{}")
    meta = training_meta(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", trainer="lora-sft",
                         data_files=[], settings={})
    (run / "README.md").write_text(front_matter(meta) + "\n# run\n")
    report = _Copy().deploy(DeployConfig(model=str(run / "merged"), out=str(tmp_path / "out")))
    path = write_deployment_card(report, model=str(run / "merged"), quant="f16")
    assert path == tmp_path / "out" / "README.md"
    card = path.read_text()
    data = yaml.safe_load(split_front_matter(card)[0])
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and data["library_name"] == "gguf"
    assert "wilson" in data["tags"] and "| copied | yes | same bytes |" in card
    assert 'LLM(provider="llamacpp:' in card and "Precision: f16" in card


def test_wilson_deploy_calls_the_card_writer():
    # 'wilson deploy' and the pipeline's deploy stage both deploy through run_deployer, which writes the card
    # (end to end: tests/test_wheels.py and the demo's deployments)
    root = Path(__file__).resolve().parent.parent / "wilson_core"
    assert "run_deployer(deployer, config)" in (root / "cli" / "deploy.py").read_text()
    assert "write_deployment_card(report" in (root / "deployment.py").read_text()
