"""Wilson plugin: LoRA fine-tuning (SFT, DPO, KTO) with PEFT and TRL, tiny local base
models, a ``transformers`` provider and ``wilson eval``.

Nothing heavy is imported here: torch, transformers, peft and trl load inside the
functions that need them.
"""

__version__ = "0.1.0"
