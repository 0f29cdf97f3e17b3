"""Wilson plugin: deploy a trained model as ONNX for Transformers.js, and run it.

- deployer ``transformersjs`` (``wilson deploy transformersjs --model DIR --out DIR``):
  the merged model (or base + LoRA adapter, merged first) exported with
  ``torch.onnx.export`` to the folder layout Transformers.js loads locally, fp32
  and int8, with ``--verify`` comparing onnxruntime and Transformers.js (Node)
  against PyTorch;
- provider ``onnx`` (``LLM("onnx:DIR")``): the exported model in onnxruntime,
  greedy generation with the KV cache, tool calls parsed back.

Nothing heavy is imported by this module.
"""

from importlib.metadata import version as _version

__version__ = _version("wilson-onnx")  # one source: the distribution's metadata (pyproject.toml)


import warnings as _warnings

# transformers 5 warns about its own internal calls (past_key_values passed to its mask helpers)
_warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)
