"""The LLM-judge annotation source: a model rates interactions against a rubric.

Its labels are *proposals* (source ``judge``, status ``proposed``) that a
person accepts or rejects (:func:`wilson_core.annotations.accept` /
``reject``); exports use them only when asked.  The judge is called through
the facade, so its own calls are captured too (call type ``judge``).

A rubric is a list of criteria with weights; the model scores each criterion
1-5 and the label's rating is the weighted mean, rounded.  A rubric file is
JSON or TOML::

    instructions = "You review answers of a personal-finance assistant."
    [[criteria]]
    name = "correctness"
    description = "Facts and numbers are right."
    weight = 2
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from attrs import field, frozen

from wilson_core.errors import AnnotationRefused, WilsonError
from wilson_core.store import labels

if TYPE_CHECKING:
    from wilson_core.records import Annotation, Interaction
    from wilson_core.store import Store

CALL_TYPE = "judge"


@frozen
class Criterion:
    name: str
    description: str = ""
    weight: float = 1.0


def _criteria(value: Iterable[Criterion]) -> tuple[Criterion, ...]:
    return tuple(value)


@frozen
class Rubric:
    criteria: tuple[Criterion, ...] = field(converter=_criteria)
    instructions: str = "You are a strict reviewer of answers given by an AI assistant."

    def __attrs_post_init__(self) -> None:
        if not self.criteria:
            raise WilsonError("a rubric needs at least one criterion")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise WilsonError(f"rubric criteria must have different names, got {', '.join(names)}")
        for criterion in self.criteria:
            if not criterion.name or not re.fullmatch(r"[\w -]+", criterion.name):
                raise WilsonError(f"criterion names are words, got {criterion.name!r}")
            if not criterion.weight > 0:
                raise WilsonError(f"criterion {criterion.name!r}: weight must be > 0, got {criterion.weight}")

    def rating(self, scores: dict[str, float]) -> int:
        """The weighted mean of the scores, rounded half up to whole stars."""
        total = sum(c.weight for c in self.criteria)
        mean = sum(c.weight * scores[c.name] for c in self.criteria) / total
        return max(1, min(5, int(mean + 0.5)))


DEFAULT_RUBRIC = Rubric(
    criteria=(
        Criterion("correctness", "Facts, numbers and reasoning are right; nothing is made up.", 0.4),
        Criterion("helpfulness", "It answers what the user actually asked, completely.", 0.3),
        Criterion("tool_use", "Tools are called when needed, with the right arguments, and not otherwise.", 0.2),
        Criterion("clarity", "Clear, concise and well organised.", 0.1),
    )
)


@frozen
class JudgeReport:
    proposals: tuple[Any, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        from wilson_core import converter

        return {
            "proposals": converter.unstructure(list(self.proposals)),
            "failures": [{"interaction_id": i, "error": e} for i, e in self.failures],
        }


def load_rubric(path: str | os.PathLike[str]) -> Rubric:
    """A rubric from a JSON or TOML file (``criteria`` list of name/description/weight)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WilsonError(f"cannot read rubric {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                raise WilsonError("TOML rubrics need Python 3.11+; use JSON") from None
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise WilsonError(f"rubric {path} cannot be parsed: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("criteria"), list):
        raise WilsonError(f"rubric {path} needs a 'criteria' list")
    criteria = []
    for index, item in enumerate(data["criteria"], 1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise WilsonError(f"rubric {path}: criterion {index} needs a name")
        unknown = set(item) - {"name", "description", "weight"}
        if unknown:
            raise WilsonError(f"rubric {path}: criterion {index} has unknown keys {sorted(unknown)}")
        try:
            weight = float(item.get("weight", 1.0))
        except (TypeError, ValueError):
            raise WilsonError(f"rubric {path}: criterion {item['name']!r} weight must be a number") from None
        criteria.append(Criterion(item["name"], str(item.get("description", "")), weight))
    kwargs = {"instructions": str(data["instructions"])} if data.get("instructions") else {}
    return Rubric(criteria=criteria, **kwargs)


def rubric_with_weights(rubric: Rubric, items: Sequence[str]) -> Rubric:
    """Keep only the named criteria with the given weights (``name=weight``; new names allowed)."""
    known = {c.name: c for c in rubric.criteria}
    criteria = []
    for item in items:
        name, sep, weight = item.partition("=")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise WilsonError(f"--criterion must be NAME=WEIGHT, got {item!r}") from None
        base = known.get(name.strip(), Criterion(name.strip()))
        criteria.append(attrs.evolve(base, weight=value))
    return attrs.evolve(rubric, criteria=criteria)


def _content(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def transcript(interaction: Interaction, tool_results: Sequence[Any] = ()) -> str:
    """The conversation and the answer as plain text for the judge."""
    lines = []
    for message in interaction.messages:
        lines.append(f"[{message.get('role')}] {_content(message.get('content'))}")
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            lines.append(f"  (tool call {function.get('name')} {_content(function.get('arguments'))})")
    if interaction.tools:
        names = [t.get("function", t).get("name", "?") for t in interaction.tools]
        lines.append(f"[tools offered] {', '.join(names)}")
    lines.append("")
    lines.append("=== ANSWER TO JUDGE ===")
    lines.append(interaction.response_content or "(no text)")
    for call in interaction.tool_calls:
        lines.append(f"(tool call {call.name} {json.dumps(call.arguments, ensure_ascii=False)})")
    for result in tool_results:
        lines.append(f"(tool result {result.name}: {result.content[:2000]})")
    return "\n".join(lines)


def judge_messages(rubric: Rubric, interaction: Interaction, tool_results: Sequence[Any] = ()) -> list[dict[str, str]]:
    criteria = "\n".join(
        f"- {c.name} (weight {c.weight:g}): {c.description}".rstrip(": ") for c in rubric.criteria
    )
    example = json.dumps({"scores": {c.name: 4 for c in rubric.criteria}, "rationale": "one or two sentences"})
    system = (
        f"{rubric.instructions}\n\nScore the final answer on each criterion from 1 (bad) to 5 "
        f"(excellent):\n{criteria}\n\nReply with one JSON object and nothing else, like:\n{example}"
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": transcript(interaction, tool_results)},
    ]


def parse_verdict(text: str | None, rubric: Rubric) -> tuple[dict[str, float], str]:
    """The per-criterion scores and the rationale from the judge's reply.

    :raises AnnotationRefused: no JSON object, a missing criterion or a score outside 1-5.
    """
    text = (text or "").strip()
    data: Any = None
    try:
        data = json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            try:
                data = json.loads(text[start : end + 1])
            except ValueError:
                data = None
    if not isinstance(data, dict) or not isinstance(data.get("scores"), dict):
        raise AnnotationRefused(f"the judge did not reply with a JSON object with 'scores': {text[:200]!r}")
    scores: dict[str, float] = {}
    for criterion in rubric.criteria:
        value = data["scores"].get(criterion.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 5:
            raise AnnotationRefused(
                f"the judge's score for {criterion.name!r} must be a number 1-5, got {value!r}"
            )
        scores[criterion.name] = float(value)
    rationale = data.get("rationale")
    return scores, rationale if isinstance(rationale, str) else ""


def _location(store: Store) -> str:
    """Where the judge's own calls are captured: the store's file, or its URL (with its password)."""
    return getattr(store, "url", None) or str(store.path)


def _candidates(
    store: Store, annotator: str, limit: int | None, ids: Sequence[str] | None, call_types: Sequence[str]
) -> list[str]:
    if ids:
        return list(dict.fromkeys(ids))
    return labels.unjudged(
        store.connection(), annotator, skip_call_type=CALL_TYPE, call_types=call_types, limit=limit
    )


def judge(
    store: Store,
    provider: str,
    *,
    rubric: Rubric = DEFAULT_RUBRIC,
    limit: int | None = 20,
    ids: Sequence[str] | None = None,
    call_types: Sequence[str] = (),
    annotator: str | None = None,
    provider_options: dict[str, Any] | None = None,
) -> JudgeReport:
    """Rate interactions with ``provider`` (``NAME:MODEL``) and store proposals.

    By default the newest ``limit`` successful interactions this judge has not
    rated yet (judge calls themselves excluded).  A reply that cannot be read
    is reported in :attr:`JudgeReport.failures` and nothing is stored for it.
    """
    from wilson_core.facade import LLM

    from .labels import annotate
    from .versions import _check_interaction

    annotator = annotator or f"judge:{provider}"
    if limit is not None and limit < 1:
        raise WilsonError(f"--limit must be at least 1, got {limit}")
    targets = _candidates(store, annotator, limit, ids, call_types)
    llm = LLM(provider, db=_location(store), call_type=CALL_TYPE, **(provider_options or {}))
    proposals: list[Annotation] = []
    failures: list[tuple[str, str]] = []
    try:
        for interaction_id in targets:
            try:
                interaction = store.get_interaction(interaction_id)
                _check_interaction(store.connection(), interaction_id)
                reply = llm.chat(
                    judge_messages(rubric, interaction, store.tool_results(interaction_id)),
                    call_type=CALL_TYPE,
                )
                scores, rationale = parse_verdict(reply.content, rubric)
            except WilsonError as exc:
                failures.append((interaction_id, str(exc)))
                continue
            except Exception as exc:  # a provider failing on one item must not stop the batch
                failures.append((interaction_id, f"{type(exc).__name__}: {exc}"))
                continue
            detail = ", ".join(f"{name} {score:g}" for name, score in scores.items())
            notes = f"{detail}. {rationale}".strip() if rationale else detail
            proposals.append(
                annotate(
                    store,
                    interaction_id,
                    rating=rubric.rating(scores),
                    notes=notes,
                    source="judge",
                    annotator=annotator,
                    status="proposed",
                )
            )
    finally:
        llm.close()
    return JudgeReport(proposals=tuple(proposals), failures=tuple(failures))
