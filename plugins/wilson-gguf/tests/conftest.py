"""Fixtures: a tiny Llama built locally (wilson_train.tiny) and a LoRA adapter trained a few steps."""

from wilson_gguf.testing import (  # noqa: F401 - fixtures and hooks for pytest
    _one_thread,
    adapter_trainer,
    pytest_collection_modifyitems,
    tiny_adapter,
    tiny_model,
    train_adapter,
)
