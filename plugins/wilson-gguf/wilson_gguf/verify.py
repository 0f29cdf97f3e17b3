"""``--verify``: load the GGUF in llama.cpp and compare it with PyTorch.

For each prompt (token ids from the Hugging Face tokenizer, fed to both runtimes so
that tokenisation cannot hide a difference) the next-token log-probabilities over
the whole vocabulary are compared; for F32 the greedy continuation of 20 tokens must
also be identical (up to the first step where PyTorch's top two are a near tie).
Tokenisation itself is checked separately (llama.cpp's tokenizer vs the HF one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wilson_core.interfaces import DeployCheck

#: max |log p_llama.cpp - log p_torch| allowed, per precision.
TOLERANCES = {"f32": 1e-4, "f16": 2e-2, "bf16": 0.15, "q8_0": 0.2, "q5_1": 0.6, "q5_0": 0.6,
              "q4_1": 1.2, "q4_0": 1.2}
#: the top-1 token must agree wherever PyTorch's top-1 leads by more than this (log-prob).
TOP1_MARGIN = {"f32": 1e-3, "f16": 0.05, "bf16": 0.1, "q8_0": 0.1, "q5_1": 0.3, "q5_0": 0.3,
               "q4_1": 0.6, "q4_0": 0.6}
#: log-probs below this underflow llama.cpp's float32 softmax and are not compared.
FLOOR = -80.0
NEAR_TIE = 1e-2
#: Types whose rounding can exceed :data:`TOLERANCES` on its own.  For them the bound is at
#: least ``ROUNDING_FACTOR`` times PyTorch's own error with the weights rounded exactly as
#: the file stores them (measured against the unrounded model on the same prompts), and the
#: top-1 rule applies where PyTorch's lead exceeds that error.  On SmolLM2-135M Q8_0 rounding
#: alone moves log-probs by 0.46-0.53, so no Q8_0 file can meet 0.2 there; llama.cpp's CPU
#: kernels also round each activation block to 8 bits (BF16: to BF16), which measured 1.4-2.9x
#: the weights' error (see docs/deploy.md).  A conversion error (a wrong permutation, a wrong tensor) is
#: orders of magnitude larger.  F16 is listed too: the base SmolLM2 meets 2e-2 with an F32 head,
#: but a merged LoRA measured 0.0245 on one CI machine (llama.cpp also rounds activations to F16
#: there), so the bound follows the weights' own rounding when that is larger.
ROUNDING_BOUND_TYPES = frozenset({"f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"})
ROUNDING_FACTOR = 4.0
GREEDY_TOKENS = 20

_TOOLS = [{"type": "function", "function": {
    "name": "categorize", "description": "Set a transaction's category",
    "parameters": {"type": "object", "properties": {"id": {"type": "string"},
                                                    "category": {"type": "string"}},
                   "required": ["id", "category"]}}}]


def prompts_from_file(tokenizer: Any, path: Path, limit: int = 8) -> list[tuple[str, list[int]]]:
    """Prompts from a JSONL file of conversations (``messages`` or ``prompt``, optional
    ``tools``; exported SFT/eval data works): each conversation up to its last non-assistant
    message, rendered with the chat template and a generation prompt."""
    import json

    from wilson_core.interfaces import DeployError

    prompts: list[tuple[str, list[int]]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DeployError(f"-o prompts={path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            messages = list(row.get("messages") or row.get("prompt") or [])
        except (ValueError, AttributeError):
            raise DeployError(f"-o prompts={path}: line {number} is not a JSON object with messages") from None
        while messages and messages[-1].get("role") == "assistant":
            messages.pop()
        if not messages:
            continue
        tools = row.get("tools")
        if isinstance(tools, str):
            tools = json.loads(tools)
        ids = tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        prompts.append((f"line{number}", [int(t) for t in ids]))
        if len(prompts) >= limit:
            break
    if not prompts:
        raise DeployError(f"-o prompts={path}: no conversations found")
    return prompts


def default_prompts(tokenizer: Any) -> list[tuple[str, list[int]]]:
    """A few prompts as token ids: chat-template turns (with tools when the template
    takes them) and plain text."""
    chats = [
        [{"role": "system", "content": "You sort bank transactions into categories."},
         {"role": "user", "content": "Category of: STARBUCKS 4.50 EUR?"}],
        [{"role": "user", "content": "Please categorise transaction t1: rent payment 900."},
         {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
             "name": "categorize", "arguments": {"id": "t1", "category": "housing"}}}]},
         {"role": "tool", "name": "categorize", "content": "ok"}],
    ]
    prompts: list[tuple[str, list[int]]] = []
    if getattr(tokenizer, "chat_template", None):
        for i, chat in enumerate(chats):
            tools = _TOOLS if i == 1 else None
            try:
                ids = tokenizer.apply_chat_template(chat, tools=tools, add_generation_prompt=True,
                                                    tokenize=True, return_dict=False)
            except Exception:
                continue
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            prompts.append((f"chat{i + 1}", [int(t) for t in ids]))
    for i, text in enumerate(["The bank statement for March shows", "Groceries and rent are"]):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        prompts.append((f"text{i + 1}", [int(t) for t in ids]))
    return prompts


def torch_log_probs(model: Any, ids: Sequence[int]) -> Any:
    import torch  # noqa: TID251 - lazy import

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(ids)])).logits[0, -1].to(torch.float64)
    return torch.log_softmax(logits, dim=-1).numpy()


def torch_greedy(model: Any, ids: Sequence[int], n: int) -> tuple[list[int], list[float]]:
    """``n`` argmax tokens and, per step, PyTorch's margin between its top two log-probs."""
    import torch  # noqa: TID251 - lazy import

    tokens, margins = [], []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([list(ids)]), use_cache=True)
        for _ in range(n):
            lp = torch.log_softmax(out.logits[0, -1].to(torch.float64), dim=-1)
            top = torch.topk(lp, 2)
            token = int(top.indices[0])
            tokens.append(token)
            margins.append(float(top.values[0] - top.values[1]))
            out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values,
                        use_cache=True)
    return tokens, margins


def compare_log_probs(reference: Any, probs: Sequence[float], quant: str,
                      margin_required: float | None = None) -> dict[str, float]:
    import numpy as np

    if margin_required is None:
        margin_required = TOP1_MARGIN.get(quant, 0.1)

    ours = np.asarray(probs, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"llama.cpp gave {ours.shape[0]} probabilities, PyTorch {reference.shape[0]}")
    mask = reference > FLOOR
    with np.errstate(divide="ignore"):
        log_ours = np.log(ours)
    diff = np.abs(log_ours[mask] - reference[mask])
    order = np.argsort(reference)[::-1]
    margin = float(reference[order[0]] - reference[order[1]])
    top1_same = int(np.argmax(ours)) == int(order[0])
    p_ref = np.exp(reference)
    kl = float(np.sum(p_ref[mask] * (reference[mask] - np.maximum(log_ours[mask], FLOOR))))
    return {
        "max_abs_diff": float(diff.max()) if diff.size else math.inf,
        "kl": kl,
        "compared": int(mask.sum()),
        "vocab": int(reference.shape[0]),
        "top1_margin": margin,
        "top1_same": float(top1_same),
        "top1_required": float(margin > margin_required),
    }


def float32_noise(model: Any, prompts: list[tuple[str, list[int]]]) -> float:
    """PyTorch's own float32 rounding noise: max |log p (float32) - log p (float64)|."""
    import copy

    import numpy as np
    import torch  # noqa: TID251 - lazy import

    model64 = copy.deepcopy(model).to(torch.float64)
    worst = 0.0
    with torch.no_grad():
        for _, ids in prompts:
            logits = model64(input_ids=torch.tensor([list(ids)])).logits[0, -1]
            exact = torch.log_softmax(logits, dim=-1).numpy()
            worst = max(worst, float(np.abs(torch_log_probs(model, ids) - exact).max()))
    del model64
    return worst


def rounded_copy(model: Any, stored_types: dict[str, str], merged: bool = False,
                 lora_type: str | None = None) -> Any:
    """A copy of ``model`` whose weights are rounded exactly as the GGUF stores them
    (``stored_types``: HF name -> GGML type name, from the writer).  ``merged``: the file
    holds the PEFT model merged; ``lora_type``: the type of a LoRA adapter GGUF applied on top."""
    import copy

    import torch  # noqa: TID251 - lazy import

    from ._writer_impl import round_trip

    rounded = copy.deepcopy(model)
    if merged and hasattr(rounded, "merge_and_unload"):
        rounded = rounded.merge_and_unload()
    with torch.no_grad():
        for name, param in rounded.named_parameters():
            if ".lora_" in name:
                type_name = lora_type
            else:
                type_name = stored_types.get(name.removeprefix("base_model.model.").replace(".base_layer", ""))
            if type_name is None or type_name == "F32":
                continue
            array = param.detach().to(torch.float32).numpy()
            param.copy_(torch.from_numpy(round_trip(array, type_name)))
    return rounded.eval()


def rounding_error(model: Any, rounded: Any, prompts: list[tuple[str, list[int]]]) -> float:
    """max |log p (weights as stored) - log p (model)| over the compared vocabulary, in PyTorch."""
    import numpy as np

    worst = 0.0
    for _, ids in prompts:
        exact = torch_log_probs(model, ids)
        mask = exact > FLOOR
        worst = max(worst, float(np.abs(torch_log_probs(rounded, ids)[mask] - exact[mask]).max()))
    return worst


def log_prob_check(name: str, model: Any, runner: Any, prompts: list[tuple[str, list[int]]],
                   quant: str, tolerance: float | None = None, rounded: Any = None) -> DeployCheck:
    """Next-token log-probs over the whole vocabulary, and the top-1 token.

    The tolerance is :data:`TOLERANCES` (or ``tolerance``); for F32 it is at least ten
    times PyTorch's own float32 noise on these prompts (a 30-layer model accumulates more
    rounding than a 2-layer one; the noise is measured against a float64 copy).  For the
    types in :data:`ROUNDING_BOUND_TYPES`, given ``rounded`` (the model with its weights
    rounded as stored, see :func:`rounded_copy`), it is at least :data:`ROUNDING_FACTOR`
    times that model's own error, and the top-1 rule needs a lead above that error.
    """
    noise = None
    rounding = None
    margin = TOP1_MARGIN.get(quant, 0.1)
    if tolerance is None:
        tolerance = TOLERANCES[quant]
        if quant == "f32":
            noise = float32_noise(model, prompts)
            tolerance = max(tolerance, 10 * noise)
        elif rounded is not None and quant in ROUNDING_BOUND_TYPES:
            rounding = rounding_error(model, rounded, prompts)
            tolerance = max(tolerance, ROUNDING_FACTOR * rounding)
            margin = max(margin, rounding)
    worst = 0.0
    worst_kl = 0.0
    failures = []
    compared = 0
    for label, ids in prompts:
        stats = compare_log_probs(torch_log_probs(model, ids), runner.next_token_probs(ids), quant, margin)
        worst = max(worst, stats["max_abs_diff"])
        worst_kl = max(worst_kl, stats["kl"])
        compared += int(stats["compared"])
        if stats["max_abs_diff"] > tolerance:
            failures.append(f"{label}: max diff {stats['max_abs_diff']:.3g} > {tolerance:.3g}")
        if stats["top1_required"] and not stats["top1_same"]:
            failures.append(f"{label}: top-1 differs (PyTorch margin {stats['top1_margin']:.3g})")
    detail = (f"{len(prompts)} prompts, {compared} log-probs, max |diff| {worst:.3g} "
              f"(tolerance {tolerance:.3g}), max KL {worst_kl:.3g}")
    if noise is not None:
        detail += f", PyTorch float32 noise {noise:.2g}"
    if rounding is not None:
        detail += (f", weights' own rounding {rounding:.3g} in PyTorch (bound max({TOLERANCES[quant]:g}, "
                   f"{ROUNDING_FACTOR:g} x that), top-1 kept where PyTorch leads by > {margin:.3g})")
    if failures:
        detail += "; " + "; ".join(failures)
    metrics = {"max_abs_diff": worst, "tolerance": tolerance, "max_kl": worst_kl,
               "prompts": len(prompts), "top1_margin": margin}
    if noise is not None:
        metrics["float32_noise"] = noise
    if rounding is not None:
        metrics["rounding_error"] = rounding
    return DeployCheck(name=name, passed=not failures, detail=detail, metrics=metrics)


def greedy_check(name: str, model: Any, runner: Any, prompts: list[tuple[str, list[int]]],
                 n: int = GREEDY_TOKENS) -> DeployCheck:
    compared = 0
    failures = []
    for label, ids in prompts:
        ref, margins = torch_greedy(model, ids, n)
        ours = runner.greedy(ids, n)
        stop = next((i for i, m in enumerate(margins) if m < NEAR_TIE), n)
        compared += stop
        if ours[:stop] != ref[:stop]:
            failures.append(f"{label}: llama.cpp {ours[:stop]} != PyTorch {ref[:stop]}")
    detail = f"{compared} greedy tokens over {len(prompts)} prompts identical"
    if failures:
        detail = "; ".join(failures)
    return DeployCheck(name=name, passed=not failures, detail=detail,
                       metrics={"tokens_compared": compared})


def tokenizer_check(name: str, tokenizer: Any, runner: Any) -> DeployCheck:
    texts = ["Hello world, 12345 transactions.", "café  tabs\tand\nnewlines",
             "<|im_start|>user\nRent 900<|im_end|>"]
    failures = []
    for text in texts:
        ref = tokenizer(text, add_special_tokens=False)["input_ids"]
        ours = runner.tokenize(text)
        bos = runner.info.get("bos")
        if ours and bos is not None and ours[0] == bos and (not ref or ref[0] != bos):
            ours = ours[1:]
        if list(ours) != list(ref):
            failures.append(f"{text!r}: llama.cpp {ours} != HF {ref}")
    return DeployCheck(name=name, passed=not failures,
                       detail="; ".join(failures) or f"{len(texts)} texts tokenised identically")


def verify_gguf(model_file: Path, torch_model: Any, tokenizer: Any, quant: str,
                lora: Sequence[Path] = (), label: str = "model",
                tolerance: float | None = None, prompts_file: Path | None = None,
                stored_types: dict[str, str] | None = None, merged: bool = False,
                lora_type: str | None = None) -> list[DeployCheck]:
    """All checks for one GGUF (with its adapters) against ``torch_model``; ``prompts_file``
    adds up to 8 of your own conversations (JSONL) to the built-in prompts.  ``stored_types``
    (from the writer) lets the lossy types measure their own rounding (see
    :data:`ROUNDING_BOUND_TYPES`); ``merged``/``lora_type`` say how the file relates to a
    PEFT ``torch_model``."""
    from .runner import LlamaCppRunner

    prompts = default_prompts(tokenizer)
    if prompts_file is not None:
        prompts += prompts_from_file(tokenizer, prompts_file)
    context = max(len(ids) for _, ids in prompts) + GREEDY_TOKENS + 8
    checks = []
    with LlamaCppRunner(model_file, lora=list(lora), exact=True, context=max(256, context)) as runner:
        checks.append(tokenizer_check(f"{label}: tokenizer", tokenizer, runner))
        rounded = None
        if tolerance is None and stored_types and quant in ROUNDING_BOUND_TYPES:
            rounded = rounded_copy(torch_model, stored_types, merged, lora_type)
        checks.append(log_prob_check(f"{label} {quant}: next-token log-probs", torch_model, runner,
                                     prompts, quant, tolerance, rounded))
        del rounded
        if quant == "f32":
            checks.append(greedy_check(f"{label} {quant}: greedy {GREEDY_TOKENS} tokens",
                                       torch_model, runner, prompts))
    return checks
