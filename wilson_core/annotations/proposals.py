"""Judge proposals: the ones waiting for a decision, and accepting or rejecting them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wilson_core.errors import AnnotationRefused
from wilson_core.records import Annotation
from wilson_core.store import labels

from .changes import _Change
from .hooks import _added
from .rows import annotation_from_row
from .versions import _append, _check_interaction, _write

if TYPE_CHECKING:
    from wilson_core.store import Store


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
    written: list[Annotation] = []
    with _write(store) as conn:
        for interaction_id in ids:
            _check_interaction(conn, interaction_id)
            rows = labels.proposals(conn, interaction_id=interaction_id, source=source, annotator=annotator)
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
    return [annotation_from_row(row) for row in labels.proposals(store.connection(), limit=limit)]
