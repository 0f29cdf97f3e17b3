"""Tiny local base models: a byte-level BPE tokenizer, a chat template and a small
Llama or Qwen2 model, built from text on this machine (no downloads).

    from wilson_train.tiny import build_tiny_model
    path = build_tiny_model("models/tiny", arch="llama", pretrain_steps=150)

The tokenizer uses the ByteLevel pre-tokenizer with the GPT-2 split regex, which
llama.cpp recognises as its ``gpt-2`` pre-tokenizer; the architectures are ones
llama.cpp and Transformers.js run.  A short full-parameter pre-training pass
gives the model enough language that LoRA gains are real rather than noise.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wilson_core.errors import WilsonError

from .corpus import categorisation_conversations, default_corpus, tool_conversations

ARCHITECTURES = ("llama", "qwen2")

BOS = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [BOS, PAD, IM_START, IM_END]
TOOL_TAGS = ["<tool_call>", "</tool_call>"]

#: ChatML-like template: system/user/assistant/tool roles, ``tools=``, tool calls as
#: ``<tool_call>{"name": .., "arguments": {..}}</tool_call>`` (arguments may be a dict
#: or a JSON string), and the assistant body *with its end token* inside the
#: generation markers, so assistant-only loss covers exactly what the model writes.
NL = "{{ '\\n' }}"
CHAT_TEMPLATE = "".join(
    [
        "{% set ns = namespace(system='') %}",
        "{% if messages and messages[0].role == 'system' %}{% set ns.system = messages[0].content or '' %}{% endif %}",
        "{% if tools %}",
        "<|im_start|>system", NL,
        "{% if ns.system %}{{ ns.system }}", NL, NL, "{% endif %}",
        "You can call tools. Write each call as <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.", NL,
        "<tools>",
        "{% for tool in tools %}", NL, "{% if tool is string %}{{ tool }}{% else %}{{ tool | tojson }}{% endif %}{% endfor %}",
        NL, "</tools><|im_end|>", NL,
        "{% elif ns.system %}",
        "<|im_start|>system", NL, "{{ ns.system }}<|im_end|>", NL,
        "{% endif %}",
        "{% for message in messages %}",
        "{% if message.role == 'system' %}",
        "{% if not loop.first %}<|im_start|>system", NL, "{{ message.content or '' }}<|im_end|>", NL, "{% endif %}",
        "{% elif message.role == 'assistant' %}",
        "<|im_start|>assistant", NL,
        "{% generation %}",
        "{{ message.content or '' }}",
        "{% for call in (message.tool_calls or []) %}",
        "{% if call.function is defined %}{% set fn = call.function %}{% else %}{% set fn = call %}{% endif %}",
        "<tool_call>{\"name\": {{ fn.name | tojson }}, \"arguments\": ",
        "{% if fn.arguments is string %}{{ fn.arguments }}{% else %}{{ (fn.arguments or {}) | tojson }}{% endif %}",
        "}</tool_call>",
        "{% endfor %}",
        "<|im_end|>",
        "{% endgeneration %}", NL,
        "{% else %}",
        "<|im_start|>{{ message.role }}", NL, "{{ message.content or '' }}<|im_end|>", NL,
        "{% endif %}",
        "{% endfor %}",
        "{% if add_generation_prompt %}<|im_start|>assistant", NL, "{% endif %}",
    ]
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped in ``PreTrainedTokenizerFast``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in TOOL_TAGS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.model_max_length = 2048
    return wrapped


def _model_config(arch: str, vocab: int, tokenizer: Any, **sizes: int) -> Any:
    common = dict(
        vocab_size=vocab,
        hidden_size=sizes["hidden_size"],
        num_hidden_layers=sizes["layers"],
        num_attention_heads=sizes["heads"],
        num_key_value_heads=sizes["kv_heads"],
        intermediate_size=sizes["intermediate"],
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "llama":
        from transformers import LlamaConfig

        config = LlamaConfig(**common)
    else:
        from transformers import Qwen2Config

        config = Qwen2Config(**common)
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict):
        rope.setdefault("rope_type", "default")
        rope["rope_theta"] = 10000.0
    else:
        config.rope_theta = 10000.0
    return config


def pretraining_texts(tokenizer: Any, corpus: list[str], seed: int) -> list[str]:
    """The corpus plus chat-formatted conversations, so the base knows the template."""
    texts = list(corpus)
    for conversation in categorisation_conversations(200, seed=seed + 1):
        texts.append(tokenizer.apply_chat_template(conversation, tokenize=False))
    for example in tool_conversations(100, seed=seed + 2):
        texts.append(
            tokenizer.apply_chat_template(example["messages"], tools=example["tools"], tokenize=False)
        )
    return texts


def pretrain(model: Any, tokenizer: Any, texts: list[str], steps: int, seed: int = 0,
             block: int = 128, batch: int = 8, lr: float = 3e-3) -> list[float]:
    """A short full-parameter causal-LM pass over ``texts`` packed in blocks; returns losses."""
    import torch  # noqa: TID251 - lazy import

    torch.manual_seed(seed)
    rng = random.Random(seed)
    ids: list[int] = []
    order = list(texts)
    rng.shuffle(order)
    for text in order:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.convert_tokens_to_ids(BOS))
    n_blocks = max(1, len(ids) // block)
    data = torch.tensor(ids[: n_blocks * block] or ids, dtype=torch.long).view(n_blocks, -1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses = []
    for _step in range(steps):
        rows = torch.tensor([rng.randrange(n_blocks) for _ in range(batch)])
        batch_ids = data[rows]
        loss = model(input_ids=batch_ids, labels=batch_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def build_tiny_model(
    out_dir: Path | str,
    arch: str = "llama",
    corpus: Path | str | list[str] | None = None,
    vocab_size: int = 2048,
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 256,
    pretrain_steps: int = 0,
    seed: int = 0,
) -> Path:
    """Build a tokenizer and a small causal LM in ``out_dir`` and return the folder.

    :param corpus: a text file (one document per line), a list of texts, or
        ``None`` for the built-in finance-flavoured corpus.
    :param pretrain_steps: full-parameter steps on the corpus plus chat-formatted
        conversations (0 keeps random weights).
    """
    if arch not in ARCHITECTURES:
        raise WilsonError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if hidden_size % heads or heads % kv_heads:
        raise WilsonError("hidden size must divide by heads, and heads by kv heads")
    texts = _corpus_texts(corpus, seed)

    import torch  # noqa: TID251 - lazy import
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = _model_config(
        arch, len(tokenizer), tokenizer, hidden_size=hidden_size, layers=layers, heads=heads,
        kv_heads=kv_heads, intermediate=intermediate,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    losses: list[float] = []
    if pretrain_steps > 0:
        losses = pretrain(model, tokenizer, pretraining_texts(tokenizer, texts, seed), pretrain_steps, seed)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=64,
    )
    from .saving import save_model_folder

    out = save_model_folder(model, tokenizer, out_dir)
    card = {
        "built_by": "wilson model init",
        "arch": arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "pretrain_steps": pretrain_steps,
        "pretrain_loss_first": losses[0] if losses else None,
        "pretrain_loss_last": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        "seed": seed,
    }
    (out / "wilson_model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out


def _corpus_texts(corpus: Path | str | list[str] | None, seed: int) -> list[str]:
    if corpus is None:
        return default_corpus(seed)
    if isinstance(corpus, list):
        texts = [t for t in corpus if t.strip()]
    else:
        path = Path(corpus)
        if not path.is_file():
            raise WilsonError(f"corpus file not found: {path}")
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise WilsonError("the corpus is empty")
    return texts
