"""Wilson's GGUF plugin: ``wilson deploy gguf`` and the ``llamacpp`` provider.

Nothing heavy is imported here; see :mod:`wilson_gguf.deployer` and :mod:`wilson_gguf.provider`.
"""
