"""``wilson deploy transformersjs``: the model as ONNX files Transformers.js loads locally.

    wilson deploy transformersjs --model runs/sft/merged --out deploy/web --verify
    wilson deploy transformersjs --model base/ --adapter runs/sft/adapter --out deploy/web
    wilson deploy transformersjs --model runs/sft/merged --out deploy/web --quant fp32

``--quant q8`` (default; ``int8`` is the same) writes ``onnx/model.onnx`` (fp32) and
``onnx/model_quantized.onnx`` (int8 weights); ``--quant fp32`` only the first.
Options: ``-o prompts=FILE.jsonl`` (verification prompts), ``-o node=false``
(skip the Transformers.js checks).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from wilson_core.interfaces import DeployConfig, Deployer, DeployError, DeployReport

_QUANT_ALIASES = {"q8": "q8", "int8": "q8", "fp32": "fp32", "f32": "fp32"}


class TransformersJsDeployer(Deployer):
    """ONNX (fp32 + int8) in the Transformers.js folder layout, verified against PyTorch."""

    description: ClassVar[str] = (
        "ONNX decoder with KV cache for Transformers.js / onnxruntime (fp32 + int8 q8)"
    )
    quant_types: ClassVar[tuple[str, ...]] = ("q8", "int8", "fp32", "f32")

    def deploy(self, config: DeployConfig) -> DeployReport:
        from . import source

        started = time.perf_counter()
        dtypes = ["fp32"] if _QUANT_ALIASES[self.resolve_quant(config) or "q8"] == "fp32" else ["fp32", "q8"]
        options = {**self.options, **config.options}
        unknown = set(options) - {"prompts", "node"}
        if unknown:
            raise DeployError(
                f"unknown transformersjs option(s): {', '.join(sorted(unknown))} (known: prompts, node)"
            )
        model_source = source.resolve_model(config.model)
        source.check_architecture(model_source)
        if config.adapter:
            source.check_adapter_base(config.adapter, source.adapter_config(config.adapter), model_source)
        from .verify import load_prompts

        prompts = load_prompts(options.get("prompts")) if config.verify else []
        created = not Path(config.out).exists()
        out = self.prepare_out(config)
        timings: dict[str, float] = {}

        mark = time.perf_counter()
        try:
            model = source.load_merged_model(model_source, config.adapter)
            tokenizer = source.load_tokenizer(model_source, config.adapter)
            if len(tokenizer) > int(model.config.vocab_size):
                raise DeployError(
                    f"the tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size}"
                )
        except DeployError:
            if created and not any(out.iterdir()):
                out.rmdir()  # refused: leave no trace
            raise
        timings["load_seconds"] = time.perf_counter() - mark

        from . import export

        files = export.write_config_files(model, tokenizer, out)
        fp32_path = out / "onnx" / "model.onnx"
        for stale in ("model.onnx", "model.onnx.data", "model_quantized.onnx"):
            (out / "onnx" / stale).unlink(missing_ok=True)
        mark = time.perf_counter()
        export.export_decoder(model, fp32_path)
        timings["export_seconds"] = time.perf_counter() - mark
        files.append(fp32_path)
        if "q8" in dtypes:
            mark = time.perf_counter()
            quantized = out / "onnx" / "model_quantized.onnx"
            export.quantize_int8(fp32_path, quantized)
            timings["quantize_seconds"] = time.perf_counter() - mark
            files.append(quantized)

        checks, notes = [], []
        if config.verify:
            from .verify import verify

            mark = time.perf_counter()
            node = options.get("node", True) not in (False, "false", "0", "no")
            checks, notes = verify(model, tokenizer, out, dtypes, prompts, node=node)
            timings["verify_seconds"] = time.perf_counter() - mark
        sizes = {f"{p.name}_bytes": float(p.stat().st_size) for p in files if p.suffix == ".onnx"}
        notes.append(
            "Transformers.js: env.localModelPath = '<parent folder>'; "
            f"AutoModelForCausalLM.from_pretrained('{out.name}', {{dtype: 'q8'}}) (or dtype 'fp32')"
        )
        return DeployReport(
            target="transformersjs",
            out=str(out),
            files=tuple(str(p) for p in files),
            provider=f"onnx:{Path(out).resolve()}",
            checks=tuple(checks),
            notes=tuple(notes),
            seconds=time.perf_counter() - started,
            details={**timings, **sizes, "dtypes": dtypes, "model_type": model_source.model_type},
        )
