"""PyTorch running the int8 file's own weights: the exact reference for ``model_quantized.onnx``.

Each ``MatMulNBits`` weight is de-quantised from the file (``(q - zero_point) * scale`` per
block) and written into a copy of the PyTorch model, in the parameter whose float32 weight the
quantiser started from (found by content in ``model.onnx``).  onnxruntime's int8 logits then
match this copy to float32 rounding (SmolLM2-135M: 8.7e-5), so the int8 file is verified as
tightly as the fp32 one.  That the file's weights are the float32 weights rounded (each within
a quantisation step, :func:`int8_reference`'s second value) is checked too, so a wrong scale or
a weight in the wrong place cannot pass.  Heavy module: imported only by ``--verify``.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from wilson_core.interfaces import DeployError


def _digest(array: Any) -> str:
    import numpy as np

    return hashlib.sha1(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def dequantized_weights(folder: Path) -> dict[str, tuple[Any, Any]]:
    """``{name of the float32 initializer in model.onnx: (de-quantised [N, K] array, its
    quantisation step per value)}`` for every ``MatMulNBits`` of ``onnx/model_quantized.onnx``."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    quantized = onnx.load(str(folder / "onnx" / "model_quantized.onnx"))
    initializers = {i.name: i for i in quantized.graph.initializer}
    weights: dict[str, tuple[Any, Any]] = {}
    for node in quantized.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = _attributes(node)
        bits, k, n, block = attrs["bits"], attrs["K"], attrs["N"], attrs["block_size"]
        if bits != 8:
            raise DeployError(f"{node.name}: {bits}-bit MatMulNBits (only 8-bit weights are verified)")
        packed = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        scales = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32).reshape(n, -1, 1)
        zero = np.float32(2 ** (bits - 1))
        if len(node.input) > 3 and node.input[3]:
            zero = numpy_helper.to_array(initializers[node.input[3]]).astype(np.float32).reshape(n, -1, 1)
        values = ((packed.reshape(n, -1, block) - zero) * scales).reshape(n, -1)[:, :k]
        steps = np.broadcast_to(np.abs(scales), (n, scales.shape[1], block)).reshape(n, -1)[:, :k]
        weights[node.input[1].removesuffix(f"_Q{bits}")] = (values, steps)
    return weights


def int8_reference(model: Any, folder: Path) -> tuple[Any, float]:
    """A copy of ``model`` (float32 PyTorch) whose linear weights are the int8 file's, de-quantised,
    and the largest |de-quantised - float32 weight| in quantisation steps (0.5 for rounding to
    the nearest step; 1 where onnxruntime's symmetric range clips the largest value)."""
    import numpy as np
    import onnx
    import torch  # noqa: TID251 - lazy import
    from onnx import numpy_helper

    weights = dequantized_weights(folder)
    fp32 = {i.name: i for i in onnx.load(str(folder / "onnx" / "model.onnx"), load_external_data=False).graph.initializer
            if i.name in weights}
    reference = copy.deepcopy(model)
    by_content = {_digest(p.detach().numpy()): p for p in reference.parameters() if p.ndim == 2}
    worst = 0.0
    with torch.no_grad():
        for name, (values, steps) in weights.items():
            if name not in fp32:
                raise DeployError(f"int8 weight {name!r} has no float32 original in model.onnx")
            original = numpy_helper.to_array(fp32[name]).T
            param = by_content.get(_digest(original))
            if param is None or tuple(param.shape) != values.shape:
                raise DeployError(f"int8 weight {name!r} matches no weight of the PyTorch model")
            moved = np.abs(values - original)
            worst = max(worst, float(np.max(np.where(steps > 0, moved / np.where(steps > 0, steps, 1), moved))))
            param.copy_(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))
    return reference.eval(), worst
