"""The training run behind ``lora-sft``, ``lora-dpo`` and ``lora-kto`` (heavy imports here).

Run folder layout::

    OUT/adapter/          PEFT adapter (adapter_config.json, adapter_model.safetensors) + tokenizer
    OUT/merged/           base + adapter merged (safetensors, tokenizer, chat template, generation config)
    OUT/checkpoints/      Trainer checkpoints (resume with --resume)
    OUT/metrics.json      losses, DPO reward accuracy/margins, tokens/s, wall time, peak memory
    OUT/train_config.json the settings used; OUT/README.md the training card
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from wilson_core.converter import unstructure
from wilson_core.interfaces import TrainConfig, TrainError, TrainReport
from wilson_core.training import manifest_for

from . import data as data_mod
from .base import BaseSpec, default_targets, load_model, load_tokenizer, resolve_base, spec_dict


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def prepare_out(config: TrainConfig) -> Path:
    """Create the run folder; refuse an existing one unless ``--force`` or ``--resume``."""
    out = Path(config.out)
    if out.exists() and any(out.iterdir()) and not config.resume:
        if not config.force:
            raise TrainError(f"{out} already exists (use --force to replace it, --resume to continue)")
        if is_main_process():
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def last_checkpoint(out: Path) -> str | None:
    """The newest complete checkpoint: a process killed while saving one leaves a folder
    without ``trainer_state.json`` (the Trainer writes it last), which cannot be resumed."""
    folder = out / "checkpoints"
    found = sorted((p for p in folder.glob("checkpoint-*") if _complete(p)),
                   key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return str(found[-1]) if found else None


def _complete(checkpoint: Path) -> bool:
    import json

    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Callbacks:
    """Builds the transformers callbacks (imported lazily)."""

    @staticmethod
    def make(total_tokens_per_epoch: int) -> tuple[Any, Any]:
        from tqdm.auto import tqdm
        from transformers import TrainerCallback
        from transformers.trainer_callback import ProgressCallback

        class Summary(ProgressCallback):
            """The progress bar, plus one readable line per logging step (not a raw dict)."""

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
                if not state.is_world_process_zero or not logs:
                    return
                if state.max_steps:
                    parts = [f"step {state.global_step}/{state.max_steps}", f"epoch {state.epoch or 0:.2f}"]
                else:
                    parts = ["before training"]
                for key, label in (
                    ("loss", "loss"), ("eval_loss", "eval_loss"), ("rewards/accuracies", "reward_acc"),
                    ("rewards/margins", "margin"), ("learning_rate", "lr"), ("grad_norm", "grad"),
                ):
                    if key in logs:
                        value = logs[key]
                        parts.append(f"{label} {value:.3g}" if isinstance(value, float) else f"{label} {value}")
                line = "  ".join(parts)
                if self.training_bar is not None:
                    self.training_bar.write(line)
                else:
                    tqdm.write(line)

        class Interrupt(TrainerCallback):
            """First Ctrl-C: finish the step, save a checkpoint, stop.  Second: abort."""

            def __init__(self) -> None:
                self.requested = False
                self.previous: Any = None

            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                def handler(signum: int, frame: Any) -> None:
                    if self.requested:
                        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)
                        raise KeyboardInterrupt
                    self.requested = True
                    tqdm.write("Interrupted: saving a checkpoint after this step (Ctrl-C again to abort)")

                try:
                    self.previous = signal.signal(signal.SIGINT, handler)
                except ValueError:  # not the main thread
                    self.previous = None

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if self.requested:
                    control.should_save = True
                    control.should_training_stop = True

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if self.previous is not None:
                    signal.signal(signal.SIGINT, self.previous)

        return Summary(), Interrupt()


def _training_args(kind: str, config: TrainConfig, out: Path, has_eval: bool) -> Any:
    import torch  # noqa: TID251 - lazy import

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    common: dict[str, Any] = dict(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps else -1,
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps or config.save_steps,
        seed=config.seed,
        use_cpu=not cuda,
        bf16=bf16,
        fp16=cuda and not bf16,
        report_to="none",
        # tqdm's carriage-return bars only on a terminal; logs get Wilson's own step lines
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        max_length=config.max_length,
    )
    # transformers 5 renamed gradient_checkpointing (the old name warns on every run)
    import inspect

    from transformers import TrainingArguments

    renamed = "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
    common["activation_checkpointing" if renamed else "gradient_checkpointing"] = cuda
    options = dict(config.options)
    if kind == "sft":
        from trl import SFTConfig

        if config.padding_free and not config.packing:
            common["max_length"] = None  # Wilson already truncated every example to --max-length
        return SFTConfig(**common, packing=config.packing, padding_free=config.padding_free,
                         assistant_only_loss=False, dataset_num_proc=None, **options)
    if kind == "dpo":
        from trl import DPOConfig

        options.setdefault("beta", 0.1)
        return DPOConfig(**common, **options)
    from trl import KTOConfig

    options.setdefault("beta", 0.1)
    return KTOConfig(**common, **options)


def _datasets(kind: str, tokenizer: Any, config: TrainConfig) -> tuple[Any, Any, int, int]:
    from datasets import Dataset

    def build(path: str) -> tuple[list[dict[str, Any]], int]:
        rows = list(data_mod.read_jsonl(path))
        if kind == "sft":
            built, dropped = data_mod.sft_rows(tokenizer, rows, config.max_length, config.assistant_only_loss)
            return built, dropped
        if kind == "dpo":
            return data_mod.dpo_rows(tokenizer, rows), 0
        return data_mod.kto_rows(tokenizer, rows), 0

    train_rows, dropped = build(config.data)
    if not train_rows:
        raise TrainError(f"{config.data}: no example keeps an assistant token within --max-length {config.max_length}")
    tokens = data_mod.token_count(tokenizer, train_rows, kind)
    train = Dataset.from_list(train_rows)
    evaluation = None
    if config.eval_data:
        eval_rows, _ = build(config.eval_data)
        evaluation = Dataset.from_list(eval_rows) if eval_rows else None
    return train, evaluation, tokens, dropped


def _trainer_class(kind: str) -> Any:
    if kind == "sft":
        from trl import SFTTrainer

        return SFTTrainer
    if kind == "dpo":
        from trl import DPOTrainer

        return DPOTrainer
    from trl import KTOTrainer

    return KTOTrainer


def _quantization(config: TrainConfig) -> Any:
    if not config.qlora:
        return None
    import torch  # noqa: TID251 - lazy import

    if not torch.cuda.is_available():
        raise TrainError("--qlora needs a CUDA GPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainError("--qlora needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)


def run(kind: str, config: TrainConfig) -> TrainReport:
    """Train ``config`` with the TRL trainer for ``kind`` (sft, dpo, kto) and write the run folder."""
    spec = resolve_base(config.base)
    out = prepare_out(config)
    resume_from = last_checkpoint(out) if config.resume else None
    if config.resume and resume_from is None:
        raise TrainError(f"--resume: no checkpoint in {out / 'checkpoints'}")

    import torch  # noqa: TID251 - lazy import
    from peft import LoraConfig, prepare_model_for_kbit_training

    started = time.perf_counter()
    tokenizer = load_tokenizer(spec)
    quantization = _quantization(config)
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    model = load_model(spec, dtype=dtype, quantization_config=quantization)
    if quantization is not None:
        model = prepare_model_for_kbit_training(model)
    train_ds, eval_ds, tokens_per_epoch, dropped = _datasets(kind, tokenizer, config)
    targets = list(config.target_modules) if config.target_modules else default_targets(model)
    peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                             target_modules=targets, task_type="CAUSAL_LM", bias="none")
    args = _training_args(kind, config, out, eval_ds is not None)
    summary, interrupt = _Callbacks.make(tokens_per_epoch)
    trainer_class = _trainer_class(kind)
    if kind == "sft" and not (config.packing or config.padding_free) and os.environ.get("WILSON_SHARED_PREFIX") != "0":
        from .shared_prefix import shared_prefix_trainer

        trainer_class = shared_prefix_trainer(trainer_class)
    trainer = trainer_class(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tokenizer, peft_config=peft_config, callbacks=[interrupt],
    )
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(summary)
    before: dict[str, Any] = {}
    if eval_ds is not None and resume_from is None:
        before = trainer.evaluate()
    train_started, cpu_started = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - train_started
    train_cpu_seconds = time.process_time() - cpu_started
    first_step = int(Path(resume_from).name.rsplit("-", 1)[-1]) if resume_from else 0
    metrics = _metrics(trainer, result, kind, tokens_per_epoch, train_seconds, len(train_ds), dropped, first_step)
    metrics["train_cpu_seconds"] = round(train_cpu_seconds, 3)
    if eval_ds is not None and not interrupt.requested:
        evaluation = _final_evaluation(trainer)
        metrics.update({k: v for k, v in evaluation.items() if isinstance(v, (int, float))})
        metrics.update({f"{k}_before": v for k, v in before.items() if k in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")})
    report = _write_outputs(trainer, tokenizer, spec, config, out, metrics, targets, interrupt.requested)
    metrics["interrupted"] = interrupt.requested
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    metrics["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if torch.cuda.is_available():
        metrics["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if is_main_process():
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        _write_card(out, config, spec, metrics, targets, interrupt.requested)
    return report


def _final_evaluation(trainer: Any) -> dict[str, Any]:
    """The eval metrics of the trained model: those the trainer logged at its last step when it
    evaluated there (the same weights), else a new evaluation."""
    step = trainer.state.global_step
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry:
            if entry.get("step") == step:
                return {k: v for k, v in entry.items() if k.startswith("eval_")}
            break
    return trainer.evaluate()


def _metrics(trainer: Any, result: Any, kind: str, tokens_per_epoch: int, seconds: float,
             examples: int, dropped: int, first_step: int = 0) -> dict[str, Any]:
    """Figures of the run; throughput counts only the steps this process trained (not resumed ones)."""
    state = trainer.state
    history = [h for h in state.log_history if "loss" in h]
    steps = state.global_step
    batch = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps * max(1, trainer.args.world_size)
    examples_seen = min(steps * batch, int(examples * max(state.epoch or 0, 0)) or steps * batch)
    if first_step and steps:
        examples_seen = examples_seen * (steps - first_step) / steps
    tokens_seen = tokens_per_epoch * examples_seen / max(1, examples)
    metrics: dict[str, Any] = {
        "trainer": kind,
        "steps": steps,
        "epochs": round(state.epoch or 0, 4),
        "examples": examples,
        "examples_dropped": dropped,
        "train_loss": result.metrics.get("train_loss"),
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
        "train_seconds": round(seconds, 3),
        "tokens_seen": int(tokens_seen),
        "tokens_per_s": round(tokens_seen / seconds, 1) if seconds else None,
    }
    for key, name in (("rewards/accuracies", "reward_accuracy"), ("rewards/margins", "reward_margin")):
        values = [h[key] for h in state.log_history if key in h]
        if values:
            metrics[f"first_{name}"] = values[0]
            metrics[f"last_{name}"] = values[-1]
    return metrics


def _write_outputs(trainer: Any, tokenizer: Any, spec: BaseSpec, config: TrainConfig, out: Path,
                   metrics: dict[str, Any], targets: list[str], interrupted: bool) -> TrainReport:
    adapter_dir = out / "adapter"
    merged_dir = out / "merged" if config.merge else None
    if not trainer.is_world_process_zero():
        return TrainReport(out=str(out), adapter=str(adapter_dir), merged=str(merged_dir) if merged_dir else None,
                           metrics=metrics, interrupted=interrupted)
    model = trainer.model
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    from .saving import fix_saved_folder, save_model_folder

    fix_saved_folder(adapter_dir, tokenizer.chat_template)
    (adapter_dir / "wilson_base.json").write_text(json.dumps(spec_dict(spec), indent=2) + "\n", encoding="utf-8")
    (out / "train_config.json").write_text(json.dumps(unstructure(config), indent=2) + "\n", encoding="utf-8")
    if merged_dir is not None:
        import torch  # noqa: TID251 - lazy import

        merged = model.merge_and_unload()
        merged = merged.to(torch.float32)
        merged.config.use_cache = True
        save_model_folder(merged, tokenizer, merged_dir)
    return TrainReport(out=str(out), adapter=str(adapter_dir), merged=str(merged_dir) if merged_dir else None,
                       metrics=metrics, interrupted=interrupted)


def _write_card(out: Path, config: TrainConfig, spec: BaseSpec, metrics: dict[str, Any],
                targets: list[str], interrupted: bool) -> None:
    manifest = manifest_for(config.data)
    manifest_line = f"`{manifest}`" if manifest else "none found beside the data file"
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    state = "**interrupted** (resume with `--resume`)" if interrupted else "complete"
    from wilson_core.modelcard import front_matter, training_meta

    hub_ids = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}  # named bases: the model they quantise
    settings = {"r": config.r, "alpha": config.alpha, "dropout": config.dropout, "lr": config.lr,
                "epochs": config.epochs, "max_steps": config.max_steps, "batch_size": config.batch_size,
                "grad_accum": config.grad_accum, "max_length": config.max_length, "seed": config.seed,
                "complete": not interrupted}
    meta = training_meta(base_model=hub_ids.get(spec.name, spec.name), trainer=config.trainer,
                         data_files=[config.data, config.eval_data], settings=settings)
    text = front_matter(meta) + f"""
# LoRA adapter trained with `wilson train {config.trainer}`

- Base model: `{spec.name}` ({spec.location}{' / ' + spec.gguf_file if spec.gguf_file else ''})
- Training data: `{config.data}`{f' (eval: `{config.eval_data}`)' if config.eval_data else ''}
- Export manifest: {manifest_line}
- Run: {state}
- LoRA: r {config.r}, alpha {config.alpha}, dropout {config.dropout}, targets {', '.join(targets)}
- Optimisation: lr {config.lr}, {config.scheduler} schedule, warm-up {config.warmup_ratio}, batch {config.batch_size} x {config.grad_accum}, max length {config.max_length}, {'max steps ' + str(config.max_steps) if config.max_steps else str(config.epochs) + ' epochs'}, seed {config.seed}
- Loss: {'assistant tokens only' if config.assistant_only_loss else 'all tokens'}

Files: `adapter/` (PEFT adapter, load with `PeftModel.from_pretrained(base, "adapter")`),
`merged/` (the merged model; any transformers consumer, `wilson deploy`), `metrics.json`,
`train_config.json`, `checkpoints/`.

Use it from an app: `wilson_core.LLM(provider="transformers:{out / 'merged'}")`.

## Metrics

| metric | value |
|---|---|
{rows}
"""
    (out / "README.md").write_text(text, encoding="utf-8")
