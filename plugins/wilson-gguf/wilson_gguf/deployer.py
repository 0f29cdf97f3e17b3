"""``wilson deploy gguf``: a Hugging Face model (and LoRA adapter) to GGUF files for llama.cpp.

    wilson deploy gguf --model merged/ --out gguf/ --quant q8_0 --verify
    wilson deploy gguf --model base/ --adapter adapter/ --out gguf/ --verify
    wilson deploy gguf --model base/ --adapter adapter/ --out gguf/ -o merge=true

With ``--adapter`` the base model and the adapter become two files (the adapter in
llama.cpp's LoRA GGUF format, what ``--lora`` and Ollama's ``ADAPTER`` take); with
``-o merge=true`` the adapter is merged into the weights first and one file is written.
Options: ``name=...`` (GGUF general.name), ``tokenizer_gguf=FILE`` (copy that GGUF's
tokenizer metadata, for a base that came from a GGUF), ``merge=true``, ``tolerance=X``
(max |log-prob diff| allowed by ``--verify`` instead of the per-precision default),
``prompts=FILE.jsonl`` (verify on up to 8 of your own conversations as well),
``output_type=TYPE`` (the output head's type, e.g. ``f32``; default per ``--quant``:
F32 for F16/BF16 files, F16 for Q8_0, Q8_0 for the 4- and 5-bit types).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from wilson_core.interfaces import DeployCheck, DeployConfig, Deployer, DeployError, DeployReport

QUANTS = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")


def provider_string(model_file: Path, adapter_file: Path | None = None) -> str:
    """The ``LLM(provider=...)`` string for a GGUF (and its LoRA adapter)."""
    spec = f"llamacpp:{model_file}"
    return f"{spec}?lora={adapter_file}" if adapter_file else spec


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


class GgufDeployer(Deployer):
    """Convert to GGUF (F32, F16, BF16, Q8_0, Q5_x, Q4_x) and the LoRA adapter to a GGUF adapter."""

    description = "GGUF for llama.cpp: merged model or base + LoRA adapter, F32/F16/BF16/Q8_0/Q5/Q4"
    quant_types = QUANTS

    def deploy(self, config: DeployConfig) -> DeployReport:
        from .source import (
            check_adapter_matches,
            load_adapter_tensors,
            load_state_dict,
            open_adapter,
            open_model,
        )

        started = time.perf_counter()
        quant = self.resolve_quant(config)
        assert quant is not None
        options = dict(config.options)
        unknown = set(options) - {"name", "tokenizer_gguf", "merge", "tolerance", "prompts", "output_type"}
        if unknown:
            raise DeployError(f"unknown gguf option(s): {', '.join(sorted(unknown))} "
                              "(known: name, tokenizer_gguf, merge, tolerance, prompts, output_type)")
        head = str(options["output_type"]).lower() if options.get("output_type") else None
        if head is not None and head not in QUANTS:
            raise DeployError(f"-o output_type={options['output_type']}: not a GGUF type we write "
                              f"(known: {', '.join(QUANTS)})")
        if options.get("prompts") and not Path(str(options["prompts"])).is_file():
            raise DeployError(f"-o prompts={options['prompts']}: no such file")
        source = open_model(config.model, options)
        adapter = open_adapter(config.adapter) if config.adapter else None
        merge = adapter is not None and _truthy(options.get("merge", False))
        # a GGUF-only base is de-quantised by transformers: load it once, reuse it to verify
        preloaded = None
        if source.gguf_file is not None:
            from .source import load_torch_model

            preloaded = load_torch_model(source)
        state = load_state_dict(source, preloaded)
        tensors = None
        if adapter is not None:
            tensors = load_adapter_tensors(adapter)
            check_adapter_matches(adapter, tensors, state, source)
        out = self.prepare_out(config)
        from . import _writer_impl as writer

        name = str(options.get("name") or config.name or _default_name(source, adapter if merge else None))
        files: list[Path] = []
        details: dict[str, Any] = {"quant": quant, "architecture": source.model_type}
        adapter_file: Path | None = None
        if merge:
            assert adapter is not None and tensors is not None
            state = _merged(state, tensors, adapter.alpha / adapter.rank)
        t0 = time.perf_counter()
        model_file = out / f"{name}-{quant}.gguf"
        details["model"] = writer.write_model(source, state, model_file, quant, name, head)
        stored_types = details["model"].pop("stored_types")
        files.append(model_file)
        if adapter is not None and not merge:
            assert tensors is not None
            lora_name = f"{name}-{adapter.path.name}-lora"
            adapter_file = out / f"{lora_name}-{'f32' if quant == 'f32' else 'f16'}.gguf"
            details["adapter"] = writer.write_adapter(source, adapter, tensors, adapter_file,
                                                      lora_name, f16=quant != "f32")
            files.append(adapter_file)
        details["convert_seconds"] = round(time.perf_counter() - t0, 3)
        details["sizes"] = {f.name: f.stat().st_size for f in files}
        del state

        checks: list[DeployCheck] = []
        if config.verify:
            t1 = time.perf_counter()
            tolerance = options.get("tolerance")
            checks = _verify(source, adapter, model_file, adapter_file, quant, merge,
                             float(tolerance) if tolerance is not None else None, preloaded,
                             Path(str(options["prompts"])) if options.get("prompts") else None,
                             stored_types)
            details["verify_seconds"] = round(time.perf_counter() - t1, 3)
        provider = provider_string(model_file, adapter_file)
        report = DeployReport(
            target="gguf", out=str(out), files=[str(f) for f in files], provider=provider,
            checks=checks, seconds=time.perf_counter() - started, details=details,
            notes=[f"llama.cpp: llama-cli -m {model_file}"
                   + (f" --lora {adapter_file}" if adapter_file else "")],
        )
        _write_manifest(out, report)
        return report


def _default_name(source: Any, adapter: Any) -> str:
    base = source.path.name if source.gguf_file is None else source.gguf_file.stem
    base = base.replace(" ", "-") or "model"
    return f"{base}-{adapter.path.name}" if adapter is not None else base


def _merged(state: dict[str, Any], tensors: dict[str, Any], scale: float) -> dict[str, Any]:
    merged = dict(state)
    for name, (a, b) in tensors.items():
        merged[name] = state[name] + scale * (b @ a)
    return merged


def _verify(source: Any, adapter: Any, model_file: Path, adapter_file: Path | None, quant: str,
            merge: bool, tolerance: float | None, preloaded: Any = None,
            prompts_file: Path | None = None,
            stored_types: dict[str, str] | None = None) -> list[DeployCheck]:
    import warnings

    import torch  # noqa: TID251 - lazy import

    from .source import load_hf_tokenizer, load_torch_model
    from .verify import verify_gguf

    torch.manual_seed(0)
    warnings.filterwarnings("ignore", category=FutureWarning)
    tokenizer = load_hf_tokenizer(source)
    if merge:
        if preloaded is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(preloaded, str(adapter.path)).eval()
        else:
            model = load_torch_model(source, adapter.path)
        return verify_gguf(model_file, model, tokenizer, quant, label="merged", tolerance=tolerance,
                           prompts_file=prompts_file, stored_types=stored_types, merged=True)
    model = preloaded if preloaded is not None else load_torch_model(source)
    checks = verify_gguf(model_file, model, tokenizer, quant, label="model", tolerance=tolerance,
                         prompts_file=prompts_file, stored_types=stored_types)
    if adapter is not None and adapter_file is not None:
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(model, str(adapter.path)).eval()
        checks += verify_gguf(model_file, tuned, tokenizer, quant, lora=[adapter_file],
                              label="model+adapter", tolerance=tolerance, prompts_file=prompts_file,
                              stored_types=stored_types, lora_type="F32" if quant == "f32" else "F16")
    return checks


def _write_manifest(out: Path, report: DeployReport) -> None:
    data = {
        "target": report.target, "files": [Path(f).name for f in report.files],
        "provider": report.provider, "passed": report.passed,
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail,
                    "metrics": c.metrics} for c in report.checks],
        "details": report.details,
    }
    (out / "wilson-deploy.json").write_text(json.dumps(data, indent=2, default=str) + "\n",
                                            encoding="utf-8")
