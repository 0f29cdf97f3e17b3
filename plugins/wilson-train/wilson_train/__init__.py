"""Wilson plugin: LoRA fine-tuning (SFT, DPO, KTO) with PEFT and TRL, tiny local base
models, a ``transformers`` provider and ``wilson eval``.

Nothing heavy is imported here: torch, transformers, peft and trl load inside the
functions that need them.
"""

from importlib.metadata import version as _version

__version__ = _version("wilson-train")  # one source: the distribution's metadata (pyproject.toml)
