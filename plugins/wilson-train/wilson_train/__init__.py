"""Wilson plugin: LoRA fine-tuning (SFT, DPO, KTO) with PEFT and TRL, tiny local base
models, a ``transformers`` provider and ``wilson eval``.

Nothing heavy is imported here: torch, transformers, peft and trl load inside the
functions that need them.
"""

from importlib.metadata import version as _version

__version__ = _version("wilson-train")  # one source: the distribution's metadata (pyproject.toml)


def _quiet_library_noise() -> None:
    """Hide library warnings a Wilson user cannot act on (each matched by its exact text).

    transformers 5 warns about its own internal calls (``past_key_values`` passed to its
    mask helpers, ``is_gradient_checkpointing`` read by TRL); PEFT warns that a local base
    folder (a GGUF base de-quantised by Wilson) has no config.json on the Hub.
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"Could not find a config file in .* will assume that the "
                                              r"vocabulary was not modified")


_quiet_library_noise()
