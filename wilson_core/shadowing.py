"""Shadow agreement: how often a local model's shadow answer agrees with the upstream answer.

Per call type (the upstream answer's):

- ``pairs``: shadow answers whose upstream answer is stored; ``shadow_errors``:
  of those, shadow answers that failed (status not ``ok``).
- ``short`` / ``exact_match`` / ``exact_agreement``: pairs whose upstream answer
  is short (at most :data:`SHORT_ANSWER` characters once normalised), how many
  of them the shadow answered identically (whitespace collapsed, case folded;
  tool calls compared by name and arguments), and the share.
- ``judged`` / ``judge_agree`` / ``judge_agreement``: pairs where a judge rated
  both answers, how many the judge rated the local answer at least as well as
  the upstream one, and the share; ``judge_mean`` = mean judge ratings.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wilson_core.store import Store

#: an upstream answer at most this long (characters, normalised) counts as short: exact match is meaningful
SHORT_ANSWER = 200


def normalise(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def answer_key(answer: dict[str, Any]) -> str:
    """An answer as compared for exact match: its normalised text and its tool calls (name + arguments)."""
    text = normalise(answer.get("response_content"))
    calls = []
    try:
        for call in json.loads(answer.get("tool_calls_json") or "null") or []:
            arguments = call.get("arguments") or call.get("raw_arguments")
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    arguments = normalise(arguments)
            calls.append([call.get("name"), arguments])
    except (ValueError, AttributeError, TypeError):
        calls = [normalise(answer.get("tool_calls_json"))]
    return text if not calls else text + "\x00" + json.dumps(calls, sort_keys=True, ensure_ascii=False)


def agreement(store: Store) -> dict[str, dict[str, Any]]:
    """Shadow agreement per call type (see the module docstring); ``{}`` when nothing was shadowed."""
    from wilson_core.store import shadow

    conn = store.connection()
    pairs = shadow.shadow_pairs(conn)
    ids = [p[side]["id"] for p in pairs for side in ("upstream", "shadow")]
    judged = shadow.judge_ratings(conn, ids)
    report: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        upstream, local = pair["upstream"], pair["shadow"]
        row = report.setdefault(upstream["call_type"] or "", {
            "pairs": 0, "shadow_errors": 0, "short": 0, "exact_match": 0, "exact_agreement": None,
            "judged": 0, "judge_agree": 0, "judge_agreement": None,
            "judge_mean": {"upstream": None, "shadow": None}, "_sums": [0, 0],
        })
        row["pairs"] += 1
        if local["status"] != "ok":
            row["shadow_errors"] += 1
        upstream_key = answer_key(upstream)
        if upstream["status"] == "ok" and len(upstream_key) <= SHORT_ANSWER:
            row["short"] += 1
            row["exact_match"] += local["status"] == "ok" and answer_key(local) == upstream_key
        if upstream["id"] in judged and local["id"] in judged:
            row["judged"] += 1
            row["judge_agree"] += judged[local["id"]] >= judged[upstream["id"]]
            row["_sums"][0] += judged[upstream["id"]]
            row["_sums"][1] += judged[local["id"]]
    for row in report.values():
        sums = row.pop("_sums")
        if row["short"]:
            row["exact_agreement"] = round(row["exact_match"] / row["short"], 4)
        if row["judged"]:
            row["judge_agreement"] = round(row["judge_agree"] / row["judged"], 4)
            row["judge_mean"] = {"upstream": round(sums[0] / row["judged"], 2),
                                 "shadow": round(sums[1] / row["judged"], 2)}
    return dict(sorted(report.items()))


def agreement_line(call_type: str, row: dict[str, Any]) -> str:
    """One line of ``wilson stats``."""
    parts = [f"  {call_type or '-'}: {row['pairs']} pair(s)"]
    if row["shadow_errors"]:
        parts.append(f"{row['shadow_errors']} shadow error(s)")
    if row["short"]:
        parts.append(f"exact match {row['exact_match']}/{row['short']} short ({row['exact_agreement']:.0%})")
    else:
        parts.append("no short answers to compare")
    if row["judged"]:
        means = row["judge_mean"]
        parts.append(f"judge: local as good {row['judge_agree']}/{row['judged']} ({row['judge_agreement']:.0%}), "
                     f"mean {means['shadow']} vs upstream {means['upstream']}")
    else:
        parts.append("no judge labels")
    return ", ".join(parts)
