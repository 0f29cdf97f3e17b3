"""Preference pairs: two answers to one context, made by hand or harvested from ratings, and undone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wilson_core.errors import AnnotationRefused, NotFound
from wilson_core.records import Annotation, utcnow
from wilson_core.store import labels

from .changes import _Change, _check_stream
from .hooks import _added
from .rows import Pair, pair_from_row
from .versions import _append, _check_interaction, _latest, _mark_undone, _previous, _write

if TYPE_CHECKING:
    from wilson_core.store import Store


def pairs_of(store: Store, interaction_id: str, *, include_undone: bool = False) -> list[Pair]:
    """The pairs an interaction is in (as chosen or rejected answer)."""
    rows = labels.pairs_of(store.connection(), interaction_id, include_undone=include_undone)
    return [pair_from_row(row) for row in rows]


def get_pair(store: Store, pair_id: str) -> Pair:
    row = labels.get_pair(store.connection(), pair_id)
    if row is None:
        raise NotFound(f"no pair with id {pair_id!r} in {store.path}")
    return pair_from_row(row)


def pair(
    store: Store,
    chosen_id: str,
    rejected_id: str,
    *,
    force: bool = False,
    source: str = "human",
    annotator: str = "local",
) -> Pair:
    """Record that ``chosen_id`` answers the shared context better than ``rejected_id``.

    Both labels get ``preference`` chosen / rejected and the pair id.

    :raises AnnotationRefused: the same id twice, or the two answers do not
        share their context (system prompt and messages) and ``force`` is false.
    """
    _check_stream(source, annotator, "accepted")
    if chosen_id == rejected_id:
        raise AnnotationRefused("a pair needs two different interactions (got the same id twice)")
    with _write(store) as conn:
        chosen = _check_interaction(conn, chosen_id)
        rejected = _check_interaction(conn, rejected_id)
        if not force and (
            chosen["context_hash"] is None or chosen["context_hash"] != rejected["context_hash"]
        ):
            raise AnnotationRefused(
                f"interactions {chosen_id} and {rejected_id} answer different contexts "
                "(system prompt or messages differ), so they cannot be a preference pair; "
                "pass force to pair them anyway"
            )
        new = _insert_pair(conn, chosen_id, rejected_id, source, annotator)
        written = _label_pair(conn, new, source, annotator)
    _added(store, written)
    return new


def undo_pair(store: Store, pair_id: str) -> Pair:
    """Take back a pair: the pair row and the label versions that recorded it."""
    with _write(store) as conn:
        row = labels.get_pair(conn, pair_id)
        if row is None:
            raise NotFound(f"no pair with id {pair_id!r} in {store.path}")
        if row["undone_at"] is not None:
            raise AnnotationRefused(f"pair {pair_id} was already undone at {row['undone_at']}")
        _undo_pair(conn, pair_id)
    return get_pair(store, pair_id)


def harvest_pairs(
    store: Store,
    *,
    min_gap: int = 2,
    annotator: str = "harvest",
    dry_run: bool = False,
    from_shadow: bool = False,
) -> list[Pair]:
    """Pairs (source ``rule``) from answers to the same context whose ratings differ by ``min_gap``+.

    Ratings are the current accepted non-judge ratings.  A pair that already
    exists (in either direction, not undone) is not made again.

    ``from_shadow``: pair each upstream answer with the local model's shadow
    answer to the same context (``wilson proxy`` shadow routes) instead, by the
    ratings of the labels that count (``effective_labels``: a person's, a rule's
    or an accepted judge label; judge proposals do not count).
    """
    if not isinstance(min_gap, int) or min_gap < 1:
        raise AnnotationRefused(f"min_gap must be a whole number of stars >= 1, got {min_gap!r}")
    conn = store.connection()
    groups: dict[str, list[Any]] = {}
    if from_shadow:
        groups = _shadow_groups(conn)
    else:
        for row in labels.rated_for_harvest(conn):
            groups.setdefault(row["context_hash"], []).append(row)
    existing = {frozenset(members) for members in labels.live_pair_members(conn)}
    planned: list[tuple[str, str]] = []
    for members in groups.values():
        for a_index, a in enumerate(members):
            for b in members[a_index + 1 :]:
                if abs(a["rating"] - b["rating"]) < min_gap:
                    continue
                if frozenset((a["id"], b["id"])) in existing:
                    continue
                better, worse = (a, b) if a["rating"] > b["rating"] else (b, a)
                planned.append((better["id"], worse["id"]))
    if dry_run:
        return [Pair(chosen, rejected, source="rule", annotator=annotator) for chosen, rejected in planned]
    made: list[Pair] = []
    written: list[Annotation] = []
    with _write(store) as conn:
        for chosen_id, rejected_id in planned:
            new = _insert_pair(conn, chosen_id, rejected_id, "rule", annotator)
            written += _label_pair(conn, new, "rule", annotator)
            made.append(new)
    _added(store, written)
    return made


def _shadow_groups(conn: Any) -> dict[str, list[dict[str, Any]]]:
    """``{key: [upstream, shadow]}`` (``id``, ``rating``) for every rated successful shadow pair."""
    from wilson_core.store import shadow

    pairs = [
        p for p in shadow.shadow_pairs(conn)
        if p["upstream"]["status"] == "ok" and p["shadow"]["status"] == "ok"
        and p["upstream"]["context_hash"] is not None
        and p["upstream"]["context_hash"] == p["shadow"]["context_hash"]
    ]
    ids = [p[side]["id"] for p in pairs for side in ("upstream", "shadow")]
    ratings = shadow.counted_ratings(conn, ids, labels.ACCEPTED_JUDGE_TIER)
    return {
        p["shadow"]["id"]: [{"id": p[side]["id"], "rating": ratings[p[side]["id"]]} for side in ("upstream", "shadow")]
        for p in pairs
        if p["upstream"]["id"] in ratings and p["shadow"]["id"] in ratings
    }


def _insert_pair(conn: Any, chosen_id: str, rejected_id: str, source: str, annotator: str) -> Pair:
    new = Pair(chosen_id=chosen_id, rejected_id=rejected_id, source=source, annotator=annotator)
    labels.insert_pair(conn, new)
    return new


def _label_pair(conn: Any, new: Pair, source: str, annotator: str) -> list[Annotation]:
    return [
        _append(conn, new.chosen_id, _Change(values={"preference": "chosen", "pair_id": new.id}), source, annotator, "accepted"),
        _append(conn, new.rejected_id, _Change(values={"preference": "rejected", "pair_id": new.id}), source, annotator, "accepted"),
    ]


def _undo_pair(conn: Any, pair_id: str) -> None:
    now = utcnow()
    labels.mark_pair_undone(conn, pair_id, now)
    # the versions that recorded this pair, when they are still the latest of their stream
    rows = labels.labels_with_pair(conn, pair_id)
    for row in rows:
        latest = _latest(conn, row["interaction_id"], row["source"], row["annotator"])
        previous = _previous(conn, row)
        introduced = previous is None or previous["pair_id"] != pair_id
        if latest is not None and latest["id"] == row["id"] and introduced:
            _mark_undone(conn, row["id"], now)
        elif latest is not None and latest["pair_id"] == pair_id:
            # labelled again since the pair was made: keep that, drop only the pair
            _append(
                conn,
                row["interaction_id"],
                _Change(clear=frozenset({"preference", "pair_id"})),
                row["source"],
                row["annotator"],
                latest["status"],
            )
