"""``--verify``: the exported ONNX files compute what PyTorch computes.

Checks, each a :class:`~wilson_core.interfaces.DeployCheck` with its figures:

- onnxruntime fp32: logits at every prompt position (one pass from an empty
  cache) and at every generated position (one token at a time through the KV
  cache) within the fp32 bound of PyTorch (:func:`fp32_bound`); greedy ids equal
  PyTorch's;
- int8 weights: each ``MatMulNBits`` value is its float32 weight rounded to the
  nearest quantisation step (within one step where onnxruntime clips at +127);
- onnxruntime int8: the same checks against PyTorch running the int8 file's own
  weights, de-quantised (:mod:`wilson_onnx.int8_weights`): logits within the fp32
  bound, greedy ids equal; and against the original PyTorch model, the same top-1
  token wherever its top-1 margin exceeds :data:`INT8_CLEAR_MARGIN` (what int8
  rounding costs is reported as ``int8_rounding``);
- Transformers.js (Node) fp32: its own tokenizer + chat template give the same
  prompt ids, last-position logits within the fp32 bound, greedy ids
  equal PyTorch's; int8: last-position logits within the fp32 bound of PyTorch
  running the int8 weights, the top-1 rule above, greedy ids equal to onnxruntime
  int8's (same model file, same engine).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wilson_core.interfaces import DeployCheck, DeployError

FP32_TOLERANCE = 1e-4
#: deep models round more: the fp32 bound grows to this many times PyTorch's own
#: float32 error (measured against a float64 copy on the same ids).
FP32_NOISE_FACTOR = 10.0
# int8 rounding moves logits by a few hundredths (tiny models) to ~1-3 (SmolLM2-135M, base and
# tuned): it is reported (``int8_rounding``), not bounded; the int8 file is held to PyTorch
# running its own de-quantised weights instead, plus the top-1 rule below.
#: top-1 must agree with PyTorch where its top-1 logit leads the runner-up by more than this.
INT8_CLEAR_MARGIN = 1.0
GREEDY_TOKENS = 20
#: an int8 weight is its float32 weight rounded to the nearest step (at most half a step away),
#: except at the top of a block's range: onnxruntime's symmetric scale is max|w| / 128 and +128
#: clips to 127, one step.  Plus float32 slack.
INT8_MAX_STEPS = 1.0 + 1e-3

DEFAULT_PROMPTS: list[dict[str, Any]] = [
    {
        "messages": [
            {"role": "system", "content": "You sort bank transactions into one category."},
            {"role": "user", "content": "Coffee at Blue Bottle, 4.50 USD"},
        ]
    },
    {
        "messages": [{"role": "user", "content": "What is the balance of my checking account?"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_balance",
                    "description": "Current balance of an account",
                    "parameters": {
                        "type": "object",
                        "properties": {"account": {"type": "string"}},
                        "required": ["account"],
                    },
                },
            }
        ],
    },
    {
        "messages": [
            {"role": "user", "content": "How much did I spend on groceries?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "sum_spending", "arguments": {"category": "groceries"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "sum_spending", "content": "312.40"},
        ]
    },
]


def load_prompts(path: str | Path | None) -> list[dict[str, Any]]:
    """Verification prompts: a JSONL file of ``{"messages", "tools"?}`` objects, or the defaults."""
    if path is None:
        return DEFAULT_PROMPTS
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        prompts = [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DeployError(f"cannot read verification prompts {path}: {exc}") from None
    if not prompts or not all(isinstance(p, dict) and isinstance(p.get("messages"), list) for p in prompts):
        raise DeployError(f"{path}: expected lines of {{\"messages\": [...], \"tools\": [...]}}")
    return prompts


def render_prompts(tokenizer: Any, prompts: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Prompts with their ids from the chat template; prompts the template rejects are noted."""
    rendered, notes = [], []
    for index, prompt in enumerate(prompts):
        try:
            text = tokenizer.apply_chat_template(
                prompt["messages"], tools=prompt.get("tools"), add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # the template's own errors (e.g. no tool role)
            notes.append(f"prompt {index} skipped: the chat template rejects it ({exc})")
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rendered.append({**prompt, "ids": list(ids)})
    if not rendered:
        raise DeployError("no verification prompt renders with this chat template: " + "; ".join(notes))
    return rendered, notes


def torch_reference(model: Any, ids: list[int], new_tokens: int) -> dict[str, Any]:
    """PyTorch greedy ids (no stop token) and the logits over prompt + generated ids."""
    import torch  # noqa: TID251 - lazy import

    with torch.no_grad():
        cache, current, generated = None, torch.tensor([ids]), []
        for _ in range(new_tokens):
            out = model(input_ids=current, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = int(out.logits[0, -1].argmax())
            generated.append(token)
            current = torch.tensor([[token]])
        logits = model(input_ids=torch.tensor([ids + generated])).logits[0].double().numpy()
    return {"generated": generated, "logits": logits}


def float32_noise(model: Any, refs: Sequence[dict[str, Any]], prompts: Sequence[dict[str, Any]]) -> float:
    """Max |PyTorch float32 logits - float64 logits| over the verification ids."""
    import copy

    import torch  # noqa: TID251 - lazy import

    exact = copy.deepcopy(model).to(torch.float64)
    noise = 0.0
    with torch.no_grad():
        for prompt, ref in zip(prompts, refs, strict=True):
            ids = torch.tensor([prompt["ids"] + ref["generated"]])
            logits = exact(input_ids=ids).logits[0].numpy()
            noise = max(noise, float(abs(logits - ref["logits"]).max()))
    del exact
    return noise


def fp32_bound(noise: float) -> float:
    """The fp32 tolerance: 1e-4, or 10x PyTorch's own float32 error when that is larger."""
    return max(FP32_TOLERANCE, FP32_NOISE_FACTOR * noise)


def _margins(logits: Any) -> Any:
    import numpy as np

    top2 = np.sort(logits, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def _compare(ref: Any, got: Any) -> dict[str, float]:
    """Max abs difference, and top-1 agreement where the reference margin is clear."""
    import numpy as np

    diff = float(np.abs(ref - got).max())
    clear = _margins(ref) > INT8_CLEAR_MARGIN
    same = ref.argmax(-1) == got.argmax(-1)
    return {
        "max_abs_diff": diff,
        "clear_positions": float(clear.sum()),
        "clear_top1_mismatches": float((clear & ~same).sum()),
        "top1_agreement": float(same.mean()),
    }


def _ort_logits(lm: Any, ids: list[int], generated: list[int]) -> Any:
    """Prompt logits in one pass, then each generated token through the KV cache."""
    import numpy as np

    logits, past = lm.step(np.asarray([ids], dtype=np.int64), lm._empty_past(1), 0)
    rows, length = [logits[0]], len(ids)
    for token in generated[:-1]:
        step_logits, past = lm.step(np.asarray([[token]], dtype=np.int64), past, length)
        rows.append(step_logits[0])
        length += 1
    return np.concatenate(rows).astype(np.float64)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def check_onnxruntime(
    folder: Path, dtype: str, prompts: list[dict[str, Any]], refs: list[dict[str, Any]], noise: float = 0.0,
    originals: list[dict[str, Any]] | None = None,
) -> tuple[DeployCheck, list[list[int]]]:
    """onnxruntime against ``refs`` (PyTorch runs; for int8, of PyTorch with the int8 weights);
    ``originals`` (int8: the original model's runs) give the top-1 rule and ``int8_rounding``,
    compared where both greedy paths still agree."""
    from .runtime import OnnxCausalLM

    lm = OnnxCausalLM(folder, dtype=dtype, threads=1)
    worst: dict[str, float] = {"max_abs_diff": 0.0, "clear_positions": 0.0, "clear_top1_mismatches": 0.0}
    greedy_equal, all_generated = 0, []
    for index, (prompt, ref) in enumerate(zip(prompts, refs, strict=True)):
        got = _ort_logits(lm, prompt["ids"], ref["generated"])
        stats = _compare(ref["logits"][: got.shape[0]], got)
        worst["max_abs_diff"] = max(worst["max_abs_diff"], stats["max_abs_diff"])
        if originals is not None:
            original = originals[index]
            rows = min(len(prompt["ids"]) + _common_prefix(original["generated"], ref["generated"]), got.shape[0])
            stats = _compare(original["logits"][:rows], got[:rows])
            worst["int8_rounding"] = max(worst.get("int8_rounding", 0.0), stats["max_abs_diff"])
        worst["clear_positions"] += stats["clear_positions"]
        worst["clear_top1_mismatches"] += stats["clear_top1_mismatches"]
        generated = lm.generate(prompt["ids"], len(ref["generated"]))
        all_generated.append(generated)
        greedy_equal += generated == ref["generated"]
    worst["greedy_equal"] = float(greedy_equal)
    worst["prompts"] = float(len(prompts))
    if dtype == "fp32":
        limit = fp32_bound(noise)
        worst["limit"], worst["pytorch_fp32_noise"] = limit, noise
        passed = worst["max_abs_diff"] <= limit and greedy_equal == len(prompts)
        detail = (
            f"max |logit diff| {worst['max_abs_diff']:.2e} (limit {limit:.1e}; PyTorch's own float32 "
            f"error {noise:.1e}) over prompt and "
            f"KV-cache steps; greedy {GREEDY_TOKENS}-token ids equal on {greedy_equal}/{len(prompts)} prompts"
        )
    else:
        limit = fp32_bound(noise)
        worst["limit"] = limit
        passed = (worst["max_abs_diff"] <= limit and greedy_equal == len(prompts)
                  and worst["clear_top1_mismatches"] == 0)
        detail = (
            f"max |logit diff| {worst['max_abs_diff']:.2e} from PyTorch running the int8 weights (limit "
            f"{limit:.1e}) over prompt and KV-cache steps; greedy ids equal its on {greedy_equal}/{len(prompts)}; "
            f"against the original model: int8 rounding {worst.get('int8_rounding', 0.0):.3f}, top-1 differs at "
            f"{worst['clear_top1_mismatches']:.0f} of {worst['clear_positions']:.0f} positions with a "
            f"margin > {INT8_CLEAR_MARGIN}"
        )
    return DeployCheck(name=f"onnxruntime {dtype}", passed=passed, detail=detail, metrics=worst), all_generated


def check_transformersjs(
    folder: Path,
    dtype: str,
    prompts: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    ort_generated: list[list[int]] | None,
    noise: float = 0.0,
    originals: list[dict[str, Any]] | None = None,
) -> DeployCheck:
    """Transformers.js in Node against PyTorch (fp32), or (q8) against PyTorch running the int8
    weights (``refs``), the original model (``originals``: top-1 rule) and onnxruntime int8's ids."""
    import numpy as np

    from .node import run_transformersjs

    name = f"Transformers.js {dtype}"
    job = {
        "model_dir": str(folder.resolve()),
        "dtype": dtype,
        "max_new_tokens": GREEDY_TOKENS,
        "prompts": [{"messages": p["messages"], "tools": p.get("tools"), "ids": p["ids"]} for p in prompts],
    }
    try:
        result = run_transformersjs(job)
    except DeployError as exc:
        return DeployCheck(name=name, passed=False, detail=str(exc))
    worst, template_equal, greedy_equal, mismatches, errors = 0.0, 0, 0, 0, []
    for index, (prompt, ref, got) in enumerate(zip(prompts, refs, result["results"], strict=True)):
        if got.get("template_error"):
            errors.append(f"prompt {index}: {got['template_error']}")
        template_equal += got.get("template_ids") == prompt["ids"]
        last_ref = ref["logits"][len(prompt["ids"]) - 1]
        last = np.asarray(got["last_logits"], dtype=np.float64)
        worst = max(worst, float(np.abs(last_ref - last).max()))
        last_original = (originals or refs)[index]["logits"][len(prompt["ids"]) - 1]
        if _margins(last_original) > INT8_CLEAR_MARGIN and last_original.argmax() != last.argmax():
            mismatches += 1
        expected = ref["generated"] if dtype == "fp32" else (ort_generated or [[]])[index]
        greedy_equal += got["generated_ids"] == expected
    n = len(prompts)
    metrics = {
        "max_abs_diff": worst,
        "template_ids_equal": float(template_equal),
        "greedy_equal": float(greedy_equal),
        "prompts": float(n),
        "load_seconds": float(result.get("load_seconds", 0.0)),
    }
    against = "PyTorch" if dtype == "fp32" else "onnxruntime int8"
    limit = fp32_bound(noise)
    metrics["limit"] = limit
    metrics["clear_top1_mismatches"] = float(mismatches)
    passed = worst <= limit and template_equal == n and greedy_equal == n and (dtype == "fp32" or mismatches == 0)
    reference = "PyTorch" if dtype == "fp32" else "PyTorch running the int8 weights"
    detail = (
        f"chat template + tokenizer give the same prompt ids on {template_equal}/{n}; "
        f"last-position max |logit diff| {worst:.2e} vs {reference} (limit {limit:.1e}); "
        f"greedy {GREEDY_TOKENS}-token ids equal {against}'s on {greedy_equal}/{n}"
    )
    if dtype != "fp32":
        detail += f"; top-1 differs from the original model's at {mismatches} clear last positions"
    if errors:
        detail += "; template errors: " + "; ".join(errors)
    return DeployCheck(name=name, passed=passed, detail=detail, metrics=metrics)


def verify(
    model: Any,
    tokenizer: Any,
    folder: Path,
    dtypes: Sequence[str],
    prompts: Sequence[dict[str, Any]],
    node: bool = True,
) -> tuple[list[DeployCheck], list[str]]:
    """Run every check for the ``dtypes`` written in ``folder``; returns checks and notes."""
    rendered, notes = render_prompts(tokenizer, prompts)
    refs = [torch_reference(model, p["ids"], GREEDY_TOKENS) for p in rendered]
    noise = float32_noise(model, refs, rendered) if "fp32" in dtypes else 0.0
    checks: list[DeployCheck] = []
    refs_by_dtype = {"fp32": refs}
    weights_check = None
    if "q8" in dtypes:
        from .int8_weights import int8_reference

        try:
            int8_model, steps = int8_reference(model, folder)
        except DeployError as exc:
            weights_check = DeployCheck(name="int8 weights", passed=False, detail=str(exc))
            dtypes = [d for d in dtypes if d != "q8"]
        else:
            weights_check = DeployCheck(
                name="int8 weights", passed=steps <= INT8_MAX_STEPS,
                detail=(f"every int8 weight is its float32 weight rounded: at most {steps:.4f} of a "
                        f"quantisation step away (limit {INT8_MAX_STEPS})"),
                metrics={"max_steps": steps})
            refs_by_dtype["q8"] = [torch_reference(int8_model, p["ids"], GREEDY_TOKENS) for p in rendered]
            del int8_model
    originals = {"q8": refs}
    generated_by_dtype: dict[str, list[list[int]]] = {}
    for dtype in dtypes:
        if dtype == "q8" and weights_check is not None:
            checks.append(weights_check)
        check, generated = check_onnxruntime(folder, dtype, rendered, refs_by_dtype[dtype], noise,
                                             originals.get(dtype))
        checks.append(check)
        generated_by_dtype[dtype] = generated
    if weights_check is not None and weights_check not in checks:
        checks.append(weights_check)
    if node:
        for dtype in dtypes:
            checks.append(
                check_transformersjs(folder, dtype, rendered, refs_by_dtype[dtype], generated_by_dtype.get(dtype),
                                     noise, originals.get(dtype))
            )
    else:
        notes.append("Transformers.js checks skipped (node=false)")
    return checks, notes
