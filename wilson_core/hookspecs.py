"""Broadcast hooks: every registered plugin receives these calls.

Plugins implement them with ``@wilson_core.hookimpl`` and register a module
through the ``wilson`` entry-point group::

    [project.entry-points.wilson]
    my_plugin = "my_package.plugin"

Named drivers that a user picks by name (exporters, trainers, deployers,
providers) are *not* hooks: see :mod:`wilson_core.interfaces`.

Hook arguments may be added in later versions; a hook implementation may
accept any subset of the documented arguments (pluggy passes only the ones it
names).  Arguments are removed only after a deprecation period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .records import Annotation, Interaction, Run, ToolResult

hookspec = pluggy.HookspecMarker("wilson")
hookimpl = pluggy.HookimplMarker("wilson")


# --- capture sinks -----------------------------------------------------------


@hookspec
def wilson_capture_interaction(interaction: Interaction, db_path: str | None) -> None:
    """Record one finished LLM call (successful or failed).

    Called by the facade after every call, on the app's thread, before the
    reply is returned to the app.  Implementations should write quickly and
    durably; they must not keep a reference that changes later (the record
    is frozen).

    :param interaction: the captured call.
    :param db_path: the database the app's facade was configured with
        (``None`` means the default), for sinks that write to a store.
    :return: ignored.  All implementations are called (not firstresult).

    An exception raised here never reaches the app: the facade counts it,
    reports it through :func:`wilson_capture_failed` and keeps going, so one
    broken sink cannot break the app or the other sinks.
    """


@hookspec
def wilson_capture_tool_result(tool_result: ToolResult, db_path: str | None) -> None:
    """Record the result of one tool call that the app executed.

    :param tool_result: the result; ``tool_result.interaction_id`` names the
        interaction whose tool call caused it.
    :param db_path: as for :func:`wilson_capture_interaction`.
    :return: ignored.  All implementations are called.

    Exceptions are isolated exactly as for :func:`wilson_capture_interaction`.
    """


@hookspec
def wilson_capture_failed(
    record: Any, sink: str, error: BaseException, db_path: str | None
) -> None:
    """A capture sink raised while writing ``record``.

    :param record: the :class:`~wilson_core.records.Interaction`,
        :class:`~wilson_core.records.ToolResult` or
        :class:`~wilson_core.records.Run` that a sink failed to write.
    :param sink: the plugin name of the sink that failed.
    :param error: the exception it raised.
    :param db_path: the facade's database (``None`` means the default); the
        SQLite sink counts the failure there (``wilson stats``).
    :return: ignored.  All implementations are called; exceptions raised
        here are swallowed (a failure report must not fail the app).
    """


# --- lifecycle ---------------------------------------------------------------


@hookspec
def wilson_run_started(run: Run, db_path: str | None) -> None:
    """A run (``with llm.run(...)``) has started.

    :param run: the new run, with its id and call type.
    :param db_path: the facade's database (``None`` means the default).
    :return: ignored.  All implementations are called; exceptions are isolated.
    """


@hookspec
def wilson_run_finished(run: Run, error: BaseException | None, db_path: str | None) -> None:
    """A run (``with llm.run(...)``) has ended.

    :param run: the run, with ``ended_at`` set.
    :param db_path: the facade's database (``None`` means the default).
    :param error: the exception that ended the ``with`` block, or ``None``.
    :return: ignored.  All implementations are called; exceptions are isolated.
    """


# --- annotation --------------------------------------------------------------


@hookspec
def wilson_annotation_sources() -> list[dict[str, str]]:
    """Declare annotation sources (where labels come from).

    :return: a list of ``{"name": ..., "kind": "human"|"judge"|"import"|"rule",
        "description": ...}`` mappings.  All implementations are called and
        their lists concatenated; ``wilson plugins`` shows them.

    A source writes labels through :func:`wilson_core.annotations.annotate`
    with its ``source`` set; this hook only makes it discoverable.
    """


@hookspec
def wilson_annotation_added(annotation: Annotation, db_path: str) -> None:
    """A label version was written to the store.

    :param annotation: the new version (already merged with the previous one).
    :param db_path: the database it was written to.
    :return: ignored.  All implementations are called; exceptions are isolated.
    """


# --- export ------------------------------------------------------------------


@hookspec
def wilson_redaction_rules() -> list[Any]:
    """Provide redaction rules applied to every exported example before it is written.

    :return: a list of rule objects, each with ``name`` (a short label used in
        placeholders such as ``<EMAIL_1>``) and ``find(text) -> iterable of
        (start, end)`` spans.  All implementations are called and their lists
        concatenated after the built-in rules.
    """


# --- CLI ---------------------------------------------------------------------


@hookspec
def wilson_register_commands(cli: click.Group) -> None:
    """Add commands to the ``wilson`` command line.

    :param cli: the top-level :class:`click.Group`; call ``cli.add_command``
        or decorate with ``@cli.command()``.
    :return: ignored.  All implementations are called, at CLI start-up, so
        keep the module light: import heavy libraries inside the command.
    """


# --- runtimes ----------------------------------------------------------------


@hookspec
def wilson_node_packages() -> list[Any]:
    """Declare the Node packages a plugin runs (its scripts ship in its wheel).

    :return: a list of :class:`wilson_core.noderuntime.NodePackage`.  All
        implementations are called and their lists concatenated; ``wilson setup``
        installs each (``npm ci --ignore-scripts`` into ``$WILSON_CACHE_DIR``) and
        :func:`wilson_core.noderuntime.ensure` does it on first use.
    """
