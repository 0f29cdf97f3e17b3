"""Wilson's GGUF plugin: ``wilson deploy gguf`` and the ``llamacpp`` provider.

Nothing heavy is imported here; see :mod:`wilson_gguf.deployer` and :mod:`wilson_gguf.provider`.
"""


import warnings as _warnings

# transformers 5 warns about its own internal calls (past_key_values passed to its mask helpers)
_warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)
