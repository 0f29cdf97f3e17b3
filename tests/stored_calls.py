"""What a test's calls left in its database, read through Wilson's store."""

from __future__ import annotations

import wilson_core


def stored(db):
    """The interactions in ``db``, in the order they were recorded."""
    store = wilson_core.open_store(db)
    try:
        return list(store.iter_interactions(order_by="i.created_at, i.rowid"))
    finally:
        store.close()


def tool_results(db, interaction_id):
    """The tool results recorded for one interaction."""
    store = wilson_core.open_store(db)
    try:
        return store.tool_results(interaction_id)
    finally:
        store.close()
