"""Blind A/B review: answers of two or three systems to one held-out prompt, names hidden.

:func:`prepare` turns a pipeline run's eval answers (``eval/answers.jsonl``: the
candidate's, the reference system's, and the captured upstream answer) into A/B
items: each answer is stored as an interaction (call type ``ab-review``, the same
context, so two answers can form a preference pair), and the order in which they are
shown is drawn per item from a seeded hash, never by system.  :func:`next_item` gives
the next item without the systems' names; :func:`pick` records the reviewer's choice
(or a tie), writes a preference pair of the chosen answer over each other one (they
feed the next DPO export) and only then reveals which system gave which answer.
The ``ab-win-rate`` evaluator turns the picks into a win rate with its interval.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wilson_core.errors import AnnotationRefused, NotFound, RecordError

CALL_TYPE = "ab-review"
UPSTREAM = "upstream"


def _order(item_id: str, systems: list[str], seed: int) -> list[str]:
    """The systems in the order shown for ``item_id``: sorted by a seeded hash (not by name)."""
    return sorted(systems, key=lambda s: hashlib.sha256(f"{seed}\0{item_id}\0{s}".encode()).digest())


def prepare(store: Any, run_folder: str | Path, *, limit: int | None = None, seed: int = 0,
            upstream: bool = True) -> dict[str, int]:
    """A/B items from the eval answers of a pipeline run (idempotent: existing items are kept).

    Systems: the candidate (``model:ID``), the reference it was compared with (``model:ID``
    or ``base:NAME``) and, with ``upstream``, the case's own captured answer.  Cases where
    every shown answer is the same text are skipped (nothing to choose).
    """
    from wilson_core.evaluators.answers import parts
    from wilson_core.records import Interaction, Run
    from wilson_core.store.registry import Registry

    folder = Path(run_folder)
    scores_file, answers_file = folder / "eval" / "scores.json", folder / "eval" / "answers.jsonl"
    if not scores_file.is_file() or not answers_file.is_file():
        raise NotFound(f"{folder}: no evaluated pipeline run there (eval/answers.jsonl and eval/scores.json)")
    scores = json.loads(scores_file.read_text(encoding="utf-8"))
    names = {"candidate": _label(scores["model_id"]), "reference": _label(scores["reference"])}
    registry = Registry(store)
    batch = folder.name
    made = skipped = kept = 0
    for line in answers_file.read_text(encoding="utf-8").splitlines():
        if limit is not None and made + kept >= limit:
            break
        row = json.loads(line)
        item_id = "ab-" + hashlib.sha256(f"{batch}\0{row['set']}\0{row['case']}".encode()).hexdigest()[:16]
        try:
            registry.ab_item(item_id)
            kept += 1
            continue
        except NotFound:
            pass
        answers = {names["candidate"]: row["candidate"], names["reference"]: row["reference"]}
        if upstream:  # the case's own answer: what the upstream model said (or its correction)
            answers[UPSTREAM] = row["upstream"]
        if len({parts(a).text for a in answers.values()}) < 2:
            skipped += 1
            continue
        run = Run(call_type=CALL_TYPE, metadata={"ab_item": item_id, "set": row["set"], "case": row["case"]})
        store.write_run(run)
        shown = []
        for sequence, system in enumerate(_order(item_id, list(answers), seed), 1):
            answer = answers[system]
            interaction = Interaction(
                run_id=run.id, sequence_num=sequence, call_type=CALL_TYPE, provider="wilson-ab", model="ab-answer",  # the system stays hidden
                messages=row["messages"], tools=row.get("tools") or (),
                response_content=parts(answer).content or None, tool_calls=_calls(answer))
            store.write_interaction(interaction, run)
            shown.append((system, interaction.id))
        registry.add_ab_item(item_id, batch, row["case"], row["set"], shown)
        made += 1
    return {"items": made, "kept": kept, "skipped_identical": skipped}


def _label(system: str) -> str:
    return system if ":" in system else f"model:{system}"


def _calls(answer: dict[str, Any]) -> tuple[Any, ...]:
    from wilson_core.messages import tool_call_from_openai

    return tuple(tool_call_from_openai(c) for c in answer.get("tool_calls") or ())


def _public(store: Any, item: dict[str, Any], reveal: bool) -> dict[str, Any]:
    answers = []
    context = None
    for answer in item["answers"]:
        interaction = store.get_interaction(answer["interaction_id"])
        context = context or {"messages": list(interaction.messages), "tools": list(interaction.tools)}
        shown: dict[str, Any] = {"slot": answer["slot"], "label": chr(ord("A") + answer["slot"]),
                                 "content": interaction.response_content or "",
                                 "tool_calls": [{"name": c.name, "arguments": c.arguments}
                                                for c in interaction.tool_calls]}
        if reveal:
            shown["system"] = answer["system"]
        answers.append(shown)
    return {"id": item["id"], "set": item["eval_set"], "batch": item["batch"],
            "messages": context["messages"] if context else [], "answers": answers}


def next_item(store: Any, batch: str | None = None) -> dict[str, Any] | None:
    """The next item without a pick, with its answers in shown order and no system names."""
    from wilson_core.store.registry import Registry

    registry = Registry(store)
    item_id = registry.next_ab_item(batch)
    if item_id is None:
        return None
    data = _public(store, registry.ab_item(item_id), reveal=False)
    data["progress"] = registry.ab_counts(batch)
    return data


def pick(store: Any, item_id: str, slot: int | None, reviewer: str = "local") -> dict[str, Any]:
    """Record a pick (``slot``) or a tie (``None``); returns the item with its systems revealed
    and the preference pairs written (chosen over each other answer).

    :raises NotFound: no such item.  :raises AnnotationRefused: already picked.
    :raises RecordError: a slot the item does not have.
    """
    from wilson_core import annotations
    from wilson_core.store.registry import Registry

    registry = Registry(store)
    item = registry.ab_item(item_id)
    if item["picks"]:
        raise AnnotationRefused(f"A/B item {item_id} was already picked")
    slots = {a["slot"]: a for a in item["answers"]}
    if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int) or slot not in slots):
        raise RecordError(f"slot must be one of {sorted(slots)} or null for a tie, got {slot!r}")
    pair_ids = []
    if slot is not None:
        chosen = slots[slot]["interaction_id"]
        for other, answer in slots.items():
            if other != slot:
                made = annotations.pair(store, chosen, answer["interaction_id"], annotator=reviewer)
                pair_ids.append(made.id)
    registry.add_ab_pick(item_id, slot, reviewer, pair_ids)
    revealed = _public(store, registry.ab_item(item_id), reveal=True)
    revealed.update(picked=slot, pairs=pair_ids, progress=registry.ab_counts(item["batch"]))
    return revealed
