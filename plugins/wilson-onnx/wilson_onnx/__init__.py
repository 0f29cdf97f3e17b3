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

__version__ = "0.1.0"
