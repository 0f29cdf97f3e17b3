"""The ``wilson.trainers`` drivers: ``lora-sft``, ``lora-dpo``, ``lora-kto``.

Light module: :meth:`check` validates data, base model and run folder without
importing torch; :meth:`train` imports the heavy implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from wilson_core.interfaces import TrainConfig, Trainer, TrainError, TrainReport
from wilson_core.training import check_data


class _LoraTrainer(Trainer):
    kind: ClassVar[str] = "sft"
    #: trainer-specific ``--option`` names passed to the TRL config.
    option_names: ClassVar[tuple[str, ...]] = ()

    def check(self, config: TrainConfig) -> None:
        from .base import resolve_base

        check_data(config.data, self.data_format, config.trainer)
        if config.eval_data:
            check_data(config.eval_data, self.data_format, config.trainer, flag="--eval-data")
        resolve_base(config.base)
        unknown = sorted(set(config.options) - set(self.option_names))
        if unknown:
            allowed = ", ".join(self.option_names) or "none"
            raise TrainError(f"{config.trainer}: unknown setting(s) {', '.join(unknown)}; trainer options: {allowed}")
        out = Path(config.out)
        if out.exists() and not out.is_dir():
            raise TrainError(f"--out {out} is a file")
        if out.exists() and any(out.iterdir()) and not (config.force or config.resume):
            raise TrainError(f"{out} already exists (use --force to replace it, --resume to continue)")
        for name in ("batch_size", "grad_accum", "max_length", "r", "alpha", "logging_steps", "save_steps"):
            if getattr(config, name) < 1:
                raise TrainError(f"{name.replace('_', '-')} must be at least 1")
        if config.lr <= 0 or not 0 <= config.dropout < 1:
            raise TrainError("lr must be positive and dropout in [0, 1)")

    def train(self, config: TrainConfig) -> TrainReport:
        self.check(config)
        from ._impl import run

        return run(self.kind, config)


class LoraSFTTrainer(_LoraTrainer):
    """Supervised fine-tuning on conversations (``messages`` + ``tools``), loss on assistant tokens."""

    description = "LoRA supervised fine-tuning (TRL SFTTrainer + PEFT) on an sft export"
    data_format = "sft"
    kind = "sft"
    option_names = ("loss_type", "truncation_mode", "pad_to_multiple_of", "packing_strategy", "neftune_noise_alpha")


class LoraDPOTrainer(_LoraTrainer):
    """Direct preference optimisation on chosen/rejected answers to one prompt."""

    description = "LoRA direct preference optimisation (TRL DPOTrainer) on a dpo export"
    data_format = "dpo"
    kind = "dpo"
    option_names = ("beta", "loss_type", "label_smoothing", "precompute_ref_log_probs", "truncation_mode")


class LoraKTOTrainer(_LoraTrainer):
    """Kahneman-Tversky optimisation on answers labelled good or bad."""

    description = "LoRA KTO (TRL KTOTrainer) on a kto export (good/bad labelled answers)"
    data_format = "kto"
    kind = "kto"
    option_names = ("beta", "desirable_weight", "undesirable_weight", "loss_type")
