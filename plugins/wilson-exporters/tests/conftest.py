"""Fixtures: the hand-written sample store and a tiny locally built model (no downloads)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def sample(tmp_path):
    from wilson_exporters.samples import build_sample_store

    store, ids = build_sample_store(tmp_path / "wilson.db")
    yield store, ids
    store.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A ~0.5M-parameter Llama with a byte-level BPE tokenizer whose chat template
    supports tools and marks assistant turns (built by wilson-train, seconds)."""
    tiny = pytest.importorskip("wilson_train.tiny", reason="wilson-train builds the tiny model")
    import torch  # noqa: TID251 - lazy import inside a fixture

    torch.set_num_threads(1)
    return tiny.build_tiny_model(tmp_path_factory.mktemp("tiny-model"), arch="llama", pretrain_steps=0)
