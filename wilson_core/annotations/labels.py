"""Writing labels: a new merged version (rating, preference, tags, notes, correction), and undo."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from wilson_core.errors import AnnotationRefused
from wilson_core.records import Annotation

from .changes import _Change, _check_stream
from .hooks import _added
from .pairs import _undo_pair
from .reading import current
from .versions import _append, _check_interaction, _latest, _mark_undone, _previous, _write

if TYPE_CHECKING:
    from wilson_core.store import Store


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
    with _write(store) as conn:
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
    with _write(store) as conn:
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


def undo(
    store: Store, interaction_id: str, *, source: str = "human", annotator: str = "local"
) -> Annotation | None:
    """Take back the latest label version of a stream; return the label now current.

    When that version made a pair, the whole pair is taken back (the pair row
    and the partner's version that marked it).

    :raises AnnotationRefused: there is nothing left to undo.
    """
    with _write(store) as conn:
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
