"""Another answer to the same context from a provider, captured like any call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wilson_core.errors import AnnotationRefused
from wilson_core.records import Interaction
from wilson_core.store import labels

from .versions import _check_interaction

if TYPE_CHECKING:
    from wilson_core.store import Store


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
    from wilson_core.facade import LLM, RunSession
    from wilson_core.records import Run

    original = store.get_interaction(interaction_id)
    conn = store.connection()
    _check_interaction(conn, interaction_id)
    last = labels.last_sequence_num(conn, original.run_id)
    llm = LLM(provider, db=getattr(store, "url", None) or str(store.path), call_type=original.call_type, **options)
    try:
        session = RunSession(llm, Run(call_type=original.call_type, id=original.run_id))
        session._sequence = last
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
