"""The annotation API: ratings, preferences, pairs, corrections, tags, notes, undo.

Every write appends a new *version* of a label; nothing is overwritten.  A
label stream is keyed by (interaction, annotator, source) and each row holds
the full merged state of its version: a field left as ``None`` is carried over
from the previous version, so setting a star never wipes the notes.  Undo marks
the latest version ``undone_at`` and the previous one becomes current again
(view ``current_annotations``).

Refusals (bad star value, unknown id, interaction of a deleted run, pair of
two different contexts) raise :class:`~wilson_core.errors.AnnotationRefused`
or :class:`~wilson_core.errors.NotFound` before anything is written.  After
each written version the ``wilson_annotation_added`` hook is called.

    from wilson_core import open_store, annotations
    store = open_store("data.db")
    annotations.annotate(store, interaction_id, rating=5, add_tags=["good-tool-use"])
    annotations.pair(store, chosen_id, rejected_id)
    annotations.correct(store, interaction_id, "The better answer")
    annotations.undo(store, interaction_id)
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from attrs import field, frozen

from . import converter
from .errors import AnnotationRefused, NotFound
from .hookspecs import hookimpl
from .records import ANNOTATION_SOURCES, PREFERENCES, Annotation, Interaction, new_id, utcnow

if TYPE_CHECKING:
    from .store import Store

STATUSES = ("accepted", "proposed", "rejected")
#: sources whose labels count as a person's (or a rule's) decision; judge labels are proposals.
HUMAN_SOURCES = ("human", "import", "rule")
MAX_TAG_LENGTH = 64
CLEARABLE = ("rating", "preference", "pair_id", "notes", "corrected_response")

_FIELDS = ("rating", "preference", "pair_id", "tags", "notes", "corrected_response")


@frozen
class Pair:
    """Two answers to the same context; ``chosen_id`` was preferred over ``rejected_id``."""

    chosen_id: str
    rejected_id: str
    source: str = "human"
    annotator: str = "local"
    id: str = field(factory=new_id)
    created_at: str = field(factory=utcnow)
    undone_at: str | None = None


@frozen
class LabelVersion:
    """One row of a label's history: the version and when (if ever) it was undone."""

    annotation: Annotation
    undone_at: str | None = None


# --- reading -------------------------------------------------------------------


def annotation_from_row(row: sqlite3.Row | dict[str, Any]) -> Annotation:
    """An :class:`Annotation` from an ``annotations`` row."""
    row = dict(row)
    return converter.structure(
        {
            "id": row["id"],
            "interaction_id": row["interaction_id"],
            "rating": row["rating"],
            "preference": row["preference"],
            "pair_id": row["pair_id"],
            "tags": json.loads(row["tags_json"] or "[]"),
            "notes": row["notes"],
            "corrected_response": row["corrected_response"],
            "source": row["source"],
            "annotator": row["annotator"],
            "status": row["status"],
            "version": row["version"],
            "created_at": row["created_at"],
        },
        Annotation,
    )


def pair_from_row(row: sqlite3.Row | dict[str, Any]) -> Pair:
    return converter.structure(dict(row), Pair)


def current(
    store: Store, interaction_id: str, *, source: str = "human", annotator: str = "local"
) -> Annotation | None:
    """The current version of one label stream, or ``None``."""
    row = _latest(store.connection(), interaction_id, source, annotator)
    return annotation_from_row(row) if row is not None else None


def current_labels(store: Store, interaction_id: str) -> list[Annotation]:
    """Every current label of an interaction (one per annotator and source), newest first."""
    rows = store.connection().execute(
        "SELECT * FROM current_annotations WHERE interaction_id = ? ORDER BY created_at DESC",
        (interaction_id,),
    )
    return [annotation_from_row(row) for row in rows]


def effective_label(store: Store, interaction_id: str) -> Annotation | None:
    """The label that counts for an interaction (see :func:`effective_of`)."""
    return effective_of(current_labels(store, interaction_id))


def effective_of(labels: Iterable[Annotation]) -> Annotation | None:
    """Of an interaction's current labels, the one that counts: the newest accepted non-judge one.

    Rule labels (from ``harvest-pairs``) carry no rating, so the rating comes from
    the newest accepted label that has one; the other fields from the newest label.
    """
    usable = sorted(
        (a for a in labels if a.source in HUMAN_SOURCES and a.status == "accepted"),
        key=lambda a: a.created_at,
        reverse=True,
    )
    if not usable:
        return None
    newest = usable[0]
    if newest.rating is None:
        rated = next((a for a in usable if a.rating is not None), None)
        if rated is not None:
            newest = attrs.evolve(newest, rating=rated.rating)
    return newest


def history(store: Store, interaction_id: str) -> list[LabelVersion]:
    """Every label version of an interaction (all sources and annotators), oldest first."""
    _check_interaction(store.connection(), interaction_id, allow_deleted=True)
    rows = store.connection().execute(
        "SELECT * FROM annotations WHERE interaction_id = ? ORDER BY created_at, rowid",
        (interaction_id,),
    )
    return [LabelVersion(annotation_from_row(row), row["undone_at"]) for row in rows]


def pairs_of(store: Store, interaction_id: str, *, include_undone: bool = False) -> list[Pair]:
    """The pairs an interaction is in (as chosen or rejected answer)."""
    sql = "SELECT * FROM pairs WHERE (chosen_id = ? OR rejected_id = ?)"
    if not include_undone:
        sql += " AND undone_at IS NULL"
    rows = store.connection().execute(sql + " ORDER BY created_at", (interaction_id, interaction_id))
    return [pair_from_row(row) for row in rows]


def get_pair(store: Store, pair_id: str) -> Pair:
    row = store.connection().execute("SELECT * FROM pairs WHERE id = ?", (pair_id,)).fetchone()
    if row is None:
        raise NotFound(f"no pair with id {pair_id!r} in {store.path}")
    return pair_from_row(row)


def alternatives(store: Store, interaction_id: str) -> list[str]:
    """Ids of the other interactions that answer the same context (same system prompt and messages)."""
    conn = store.connection()
    row = _check_interaction(conn, interaction_id, allow_deleted=True)
    if row["context_hash"] is None:
        return []
    rows = conn.execute(
        "SELECT i.id FROM interactions i LEFT JOIN runs r ON r.id = i.run_id "
        "WHERE i.context_hash = ? AND i.id != ? AND r.deleted_at IS NULL "
        "ORDER BY i.created_at, i.rowid",
        (row["context_hash"], interaction_id),
    )
    return [r[0] for r in rows]


# --- writing -------------------------------------------------------------------


def annotate(
    store: Store,
    interaction_id: str,
    *,
    rating: int | None = None,
    preference: str | None = None,
    tags: Iterable[str] | None = None,
    add_tags: Iterable[str] = (),
    remove_tags: Iterable[str] = (),
    notes: str | None = None,
    corrected_response: str | None = None,
    pair_id: str | None = None,
    clear: Iterable[str] = (),
    source: str = "human",
    annotator: str = "local",
    status: str = "accepted",
) -> Annotation:
    """Write a new version of the label of ``interaction_id``; return it (merged).

    Fields left as ``None`` keep their previous value; ``tags`` replaces the
    tags, ``add_tags`` / ``remove_tags`` edit them; ``clear`` names fields to
    empty (``"notes"``, ``"corrected_response"``, ...).

    :raises AnnotationRefused: a bad value or an interaction of a deleted run.
    :raises NotFound: no interaction with that id.
    """
    change = _Change.build(
        rating=rating,
        preference=preference,
        tags=tags,
        add_tags=add_tags,
        remove_tags=remove_tags,
        notes=notes,
        corrected_response=corrected_response,
        pair_id=pair_id,
        clear=clear,
    )
    _check_stream(source, annotator, status)
    change.require_something()
    conn = store.connection()
    with _write(conn):
        _check_interaction(conn, interaction_id)
        written = _append(conn, interaction_id, change, source, annotator, status)
    _added(store, [written])
    return written


def annotate_many(
    store: Store,
    interaction_ids: Sequence[str],
    *,
    source: str = "human",
    annotator: str = "local",
    status: str = "accepted",
    **fields: Any,
) -> list[Annotation]:
    """The same change on many interactions, all or nothing (bulk rate / tag)."""
    change = _Change.build(**fields)
    _check_stream(source, annotator, status)
    change.require_something()
    ids = list(dict.fromkeys(interaction_ids))
    if not ids:
        raise AnnotationRefused("no interactions selected")
    conn = store.connection()
    with _write(conn):
        for interaction_id in ids:
            _check_interaction(conn, interaction_id)
        written = [_append(conn, i, change, source, annotator, status) for i in ids]
    _added(store, written)
    return written


def rate(store: Store, interaction_id: str, stars: int, **kwargs: Any) -> Annotation:
    """Give ``stars`` (1-5); notes, tags and the rest of the label are kept."""
    return annotate(store, interaction_id, rating=stars, **kwargs)


def correct(
    store: Store, interaction_id: str, response: str, *, annotator: str = "local", source: str = "human"
) -> Annotation:
    """Store a corrected response: the gold SFT answer, and with the original a DPO pair."""
    if not isinstance(response, str) or not response.strip():
        raise AnnotationRefused("a correction needs the corrected response text (it was empty)")
    return annotate(
        store, interaction_id, corrected_response=response, annotator=annotator, source=source
    )


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
    conn = store.connection()
    with _write(conn):
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


def undo(
    store: Store, interaction_id: str, *, source: str = "human", annotator: str = "local"
) -> Annotation | None:
    """Take back the latest label version of a stream; return the label now current.

    When that version made a pair, the whole pair is taken back (the pair row
    and the partner's version that marked it).

    :raises AnnotationRefused: there is nothing left to undo.
    """
    conn = store.connection()
    with _write(conn):
        _check_interaction(conn, interaction_id)
        latest = _latest(conn, interaction_id, source, annotator)
        if latest is None:
            raise AnnotationRefused(
                f"nothing to undo for interaction {interaction_id} "
                f"(no {source} label by {annotator!r})"
            )
        previous = _previous(conn, latest)
        made_pair = latest["pair_id"] is not None and (
            previous is None or previous["pair_id"] != latest["pair_id"]
        )
        if made_pair:
            _undo_pair(conn, latest["pair_id"])
        _mark_undone(conn, latest["id"])
    return current(store, interaction_id, source=source, annotator=annotator)


def undo_pair(store: Store, pair_id: str) -> Pair:
    """Take back a pair: the pair row and the label versions that recorded it."""
    conn = store.connection()
    with _write(conn):
        row = conn.execute("SELECT * FROM pairs WHERE id = ?", (pair_id,)).fetchone()
        if row is None:
            raise NotFound(f"no pair with id {pair_id!r} in {store.path}")
        if row["undone_at"] is not None:
            raise AnnotationRefused(f"pair {pair_id} was already undone at {row['undone_at']}")
        _undo_pair(conn, pair_id)
    return get_pair(store, pair_id)


def harvest_pairs(
    store: Store, *, min_gap: int = 2, annotator: str = "harvest", dry_run: bool = False
) -> list[Pair]:
    """Pairs (source ``rule``) from answers to the same context whose ratings differ by ``min_gap``+.

    Ratings are the current accepted non-judge ratings.  A pair that already
    exists (in either direction, not undone) is not made again.
    """
    if not isinstance(min_gap, int) or min_gap < 1:
        raise AnnotationRefused(f"min_gap must be a whole number of stars >= 1, got {min_gap!r}")
    conn = store.connection()
    rows = conn.execute(
        """
        SELECT i.id, i.context_hash, i.created_at,
               (SELECT a.rating FROM annotations a
                 WHERE a.interaction_id = i.id AND a.undone_at IS NULL AND a.rating IS NOT NULL
                   AND a.status = 'accepted' AND a.source IN ('human', 'import', 'rule')
                 ORDER BY a.created_at DESC, a.rowid DESC LIMIT 1) AS rating
        FROM interactions i LEFT JOIN runs r ON r.id = i.run_id
        WHERE i.id IN (SELECT interaction_id FROM annotations
                        WHERE undone_at IS NULL AND rating IS NOT NULL)
          AND r.deleted_at IS NULL AND i.context_hash IS NOT NULL AND i.status = 'ok'
        ORDER BY i.context_hash, i.created_at, i.rowid
        """
    ).fetchall()
    groups: dict[str, list[sqlite3.Row]] = {}
    for row in rows:
        if row["rating"] is not None:
            groups.setdefault(row["context_hash"], []).append(row)
    existing = {
        frozenset((r[0], r[1]))
        for r in conn.execute("SELECT chosen_id, rejected_id FROM pairs WHERE undone_at IS NULL")
    }
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
    with _write(conn):
        for chosen_id, rejected_id in planned:
            new = _insert_pair(conn, chosen_id, rejected_id, "rule", annotator)
            written += _label_pair(conn, new, "rule", annotator)
            made.append(new)
    _added(store, written)
    return made


def regenerate(
    store: Store,
    interaction_id: str,
    provider: str,
    **options: Any,
) -> Interaction:
    """Ask ``provider`` (``NAME:MODEL``) for another answer to the same context.

    The call goes through the facade, so it is captured like any call: same
    messages, tools and request parameters, same run (next sequence number),
    same call type.  Pick the better answer afterwards with :func:`pair`.
    """
    from .facade import LLM, RunSession
    from .records import Run

    original = store.get_interaction(interaction_id)
    conn = store.connection()
    _check_interaction(conn, interaction_id)
    last = conn.execute(
        "SELECT max(sequence_num) FROM interactions WHERE run_id = ?", (original.run_id,)
    ).fetchone()[0]
    llm = LLM(provider, db=str(store.path), call_type=original.call_type, **options)
    try:
        session = RunSession(llm, Run(call_type=original.call_type, id=original.run_id))
        session._sequence = int(last or 0)
        reply = session.chat(
            list(original.messages), tools=list(original.tools) or None, **dict(original.params)
        )
    finally:
        llm.close()
    if llm.capture_failures:
        raise AnnotationRefused(
            f"the regenerated answer from {provider} could not be captured in {store.path}"
        )
    return store.get_interaction(reply.interaction_id)


def set_status(
    store: Store,
    interaction_ids: Sequence[str],
    status: str,
    *,
    source: str = "judge",
    annotator: str | None = None,
) -> list[Annotation]:
    """Accept or reject proposals: a new version of each proposed label with ``status``.

    :param annotator: only proposals by this annotator (default: any).
    :raises AnnotationRefused: an id has no proposal to decide on.
    """
    if status not in ("accepted", "rejected"):
        raise AnnotationRefused(f"a proposal is accepted or rejected, not {status!r}")
    ids = list(dict.fromkeys(interaction_ids))
    if not ids:
        raise AnnotationRefused("no proposals selected")
    conn = store.connection()
    written: list[Annotation] = []
    with _write(conn):
        for interaction_id in ids:
            _check_interaction(conn, interaction_id)
            sql = (
                "SELECT * FROM current_annotations WHERE interaction_id = ? AND source = ? "
                "AND status = 'proposed'"
            )
            params: list[Any] = [interaction_id, source]
            if annotator is not None:
                sql += " AND annotator = ?"
                params.append(annotator)
            rows = conn.execute(sql, params).fetchall()
            if not rows:
                raise AnnotationRefused(
                    f"interaction {interaction_id} has no {source} proposal waiting for a decision"
                )
            for row in rows:
                written.append(
                    _append(conn, interaction_id, _Change(), row["source"], row["annotator"], status)
                )
    _added(store, written)
    return written


def accept(store: Store, interaction_ids: Sequence[str], **kwargs: Any) -> list[Annotation]:
    """Accept judge proposals (exports use them when asked to include judge labels)."""
    return set_status(store, interaction_ids, "accepted", **kwargs)


def reject(store: Store, interaction_ids: Sequence[str], **kwargs: Any) -> list[Annotation]:
    """Reject judge proposals (kept in the history, never exported)."""
    return set_status(store, interaction_ids, "rejected", **kwargs)


def pending_proposals(store: Store, *, limit: int | None = None) -> list[Annotation]:
    """Current judge labels still waiting for a decision, newest first."""
    sql = (
        "SELECT * FROM current_annotations WHERE source = 'judge' AND status = 'proposed' "
        "ORDER BY created_at DESC"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [annotation_from_row(row) for row in store.connection().execute(sql)]


# --- the built-in annotation sources (declared on the wilson_annotation_sources hook) ---


@hookimpl
def wilson_annotation_sources() -> list[dict[str, str]]:
    """The sources wilson-core itself provides (the dashboard plugin declares its own)."""
    return [
        {"name": "cli", "kind": "human", "description": "wilson annotate rate/pair/correct/tag/note/undo"},
        {"name": "import", "kind": "import", "description": "wilson annotate import FILE (CSV or JSONL)"},
        {"name": "judge", "kind": "judge", "description": "wilson annotate judge: an LLM scores answers "
         "with a weighted rubric; its labels are proposals to accept or reject"},
        {"name": "harvest-pairs", "kind": "rule", "description": "pairs from answers to one context "
         "whose ratings differ by 2+ stars"},
    ]


# --- internals -----------------------------------------------------------------


@frozen
class _Change:
    """A validated change to a label: which fields to set, which to clear, tag edits."""

    values: dict[str, Any] = field(factory=dict)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    replace_tags: tuple[str, ...] | None = None
    clear: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        *,
        rating: Any = None,
        preference: Any = None,
        tags: Iterable[str] | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        notes: Any = None,
        corrected_response: Any = None,
        pair_id: Any = None,
        clear: Iterable[str] = (),
    ) -> _Change:
        values: dict[str, Any] = {}
        if rating is not None:
            values["rating"] = check_rating(rating)
        if preference is not None:
            if preference not in PREFERENCES:
                raise AnnotationRefused(
                    f"preference must be one of {', '.join(PREFERENCES)}, got {preference!r}"
                )
            values["preference"] = preference
        for name, value in (("notes", notes), ("corrected_response", corrected_response)):
            if value is not None:
                if not isinstance(value, str):
                    raise AnnotationRefused(f"{name} must be text, got {type(value).__name__}")
                values[name] = value
        if pair_id is not None:
            values["pair_id"] = str(pair_id)
        cleared = frozenset(clear)
        unknown = cleared - set(CLEARABLE) - {"tags"}
        if unknown:
            raise AnnotationRefused(f"cannot clear {', '.join(sorted(unknown))}")
        return cls(
            values=values,
            add_tags=check_tags(add_tags),
            remove_tags=check_tags(remove_tags),
            replace_tags=check_tags(tags) if tags is not None else None,
            clear=cleared,
        )

    def require_something(self) -> None:
        if not (self.values or self.add_tags or self.remove_tags or self.clear) and self.replace_tags is None:
            raise AnnotationRefused(
                "nothing to change: give a rating, preference, tags, notes or a corrected response"
            )

    def apply(self, previous: dict[str, Any]) -> dict[str, Any]:
        state = {name: previous.get(name) for name in _FIELDS}
        state["tags"] = list(previous.get("tags") or [])
        for name in self.clear:
            state[name] = [] if name == "tags" else None
        state.update(self.values)
        if self.replace_tags is not None:
            state["tags"] = list(self.replace_tags)
        for tag in self.add_tags:
            if tag not in state["tags"]:
                state["tags"].append(tag)
        state["tags"] = [t for t in state["tags"] if t not in self.remove_tags]
        return state


def check_rating(value: Any) -> int:
    """A star value 1-5, or :class:`AnnotationRefused`."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise AnnotationRefused(f"a rating is a whole number of stars from 1 to 5, got {value!r}")
    return value


def check_tags(tags: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(tags, str):
        tags = [tags]
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise AnnotationRefused(f"a tag is non-empty text, got {tag!r}")
        tag = tag.strip()
        if len(tag) > MAX_TAG_LENGTH:
            raise AnnotationRefused(f"a tag is at most {MAX_TAG_LENGTH} characters: {tag[:20]!r}...")
        if tag not in cleaned:
            cleaned.append(tag)
    return tuple(cleaned)


def _check_stream(source: str, annotator: str, status: str) -> None:
    if source not in ANNOTATION_SOURCES:
        raise AnnotationRefused(
            f"source must be one of {', '.join(ANNOTATION_SOURCES)}, got {source!r}"
        )
    if not isinstance(annotator, str) or not annotator.strip():
        raise AnnotationRefused("annotator must be a non-empty name")
    if status not in STATUSES:
        raise AnnotationRefused(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if source != "judge" and status != "accepted":
        raise AnnotationRefused(f"only judge labels can be {status!r}; {source} labels are accepted")


def _check_interaction(conn: sqlite3.Connection, interaction_id: str, *, allow_deleted: bool = False) -> sqlite3.Row:
    row = conn.execute(
        "SELECT i.id, i.run_id, i.context_hash, r.deleted_at FROM interactions i "
        "LEFT JOIN runs r ON r.id = i.run_id WHERE i.id = ?",
        (interaction_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no interaction with id {interaction_id!r}")
    if row["deleted_at"] is not None and not allow_deleted:
        raise AnnotationRefused(
            f"interaction {interaction_id} belongs to run {row['run_id']}, which was deleted "
            f"at {row['deleted_at']}; its interactions cannot be annotated"
        )
    return row


def _latest(conn: sqlite3.Connection, interaction_id: str, source: str, annotator: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM annotations WHERE interaction_id = ? AND source = ? AND annotator = ? "
        "AND undone_at IS NULL ORDER BY version DESC LIMIT 1",
        (interaction_id, source, annotator),
    ).fetchone()


def _previous(conn: sqlite3.Connection, row: sqlite3.Row) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM annotations WHERE interaction_id = ? AND source = ? AND annotator = ? "
        "AND undone_at IS NULL AND version < ? ORDER BY version DESC LIMIT 1",
        (row["interaction_id"], row["source"], row["annotator"], row["version"]),
    ).fetchone()


def _append(
    conn: sqlite3.Connection,
    interaction_id: str,
    change: _Change,
    source: str,
    annotator: str,
    status: str,
) -> Annotation:
    previous = _latest(conn, interaction_id, source, annotator)
    before: dict[str, Any] = {}
    if previous is not None:
        before = dict(previous)
        before["tags"] = json.loads(previous["tags_json"] or "[]")
    state = change.apply(before)
    version = (
        conn.execute(
            "SELECT max(version) FROM annotations WHERE interaction_id = ? AND source = ? "
            "AND annotator = ?",
            (interaction_id, source, annotator),
        ).fetchone()[0]
        or 0
    ) + 1
    annotation = Annotation(
        interaction_id=interaction_id,
        rating=state["rating"],
        preference=state["preference"],
        pair_id=state["pair_id"],
        tags=tuple(state["tags"]),
        notes=state["notes"],
        corrected_response=state["corrected_response"],
        source=source,
        annotator=annotator,
        status=status,
        version=version,
    )
    conn.execute(
        "INSERT INTO annotations (id, interaction_id, rating, preference, pair_id, tags_json, "
        "notes, corrected_response, source, annotator, status, version, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            annotation.id,
            interaction_id,
            annotation.rating,
            annotation.preference,
            annotation.pair_id,
            json.dumps(list(annotation.tags), ensure_ascii=False) if annotation.tags else None,
            annotation.notes,
            annotation.corrected_response,
            source,
            annotator,
            status,
            version,
            annotation.created_at,
        ),
    )
    return annotation


def _insert_pair(conn: sqlite3.Connection, chosen_id: str, rejected_id: str, source: str, annotator: str) -> Pair:
    new = Pair(chosen_id=chosen_id, rejected_id=rejected_id, source=source, annotator=annotator)
    conn.execute(
        "INSERT INTO pairs (id, chosen_id, rejected_id, source, annotator, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (new.id, chosen_id, rejected_id, source, annotator, new.created_at),
    )
    return new


def _label_pair(conn: sqlite3.Connection, new: Pair, source: str, annotator: str) -> list[Annotation]:
    return [
        _append(conn, new.chosen_id, _Change(values={"preference": "chosen", "pair_id": new.id}), source, annotator, "accepted"),
        _append(conn, new.rejected_id, _Change(values={"preference": "rejected", "pair_id": new.id}), source, annotator, "accepted"),
    ]


def _undo_pair(conn: sqlite3.Connection, pair_id: str) -> None:
    now = utcnow()
    conn.execute("UPDATE pairs SET undone_at = ? WHERE id = ? AND undone_at IS NULL", (now, pair_id))
    # the versions that recorded this pair, when they are still the latest of their stream
    rows = conn.execute(
        "SELECT * FROM annotations WHERE pair_id = ? AND undone_at IS NULL", (pair_id,)
    ).fetchall()
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


def _mark_undone(conn: sqlite3.Connection, annotation_id: str, when: str | None = None) -> None:
    conn.execute(
        "UPDATE annotations SET undone_at = ? WHERE id = ?", (when or utcnow(), annotation_id)
    )


class _write:
    """A ``BEGIN IMMEDIATE`` transaction (reads inside it see a stable database)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        from .store.store import transaction

        self._tx = transaction(conn)

    def __enter__(self) -> sqlite3.Connection:
        return self._tx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._tx.__exit__(*exc)


def _added(store: Store, written: Sequence[Annotation]) -> None:
    """Fire ``wilson_annotation_added`` for each written version; a failing plugin only warns."""
    if not written:
        return
    from . import plugins

    caller = plugins.hook().wilson_annotation_added
    impls = caller.get_hookimpls()
    if not impls:
        return
    kwargs = {"db_path": str(store.path)}
    for annotation in written:
        kwargs["annotation"] = annotation
        for impl in impls:
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as exc:
                warnings.warn(
                    f"wilson_annotation_added hook of {impl.plugin_name!r} failed: "
                    f"{type(exc).__name__}: {exc}",
                    stacklevel=3,
                )
