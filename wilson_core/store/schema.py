"""The database schema, as versioned ``sqlite_utils`` migrations.

Add a migration for every change (``mNNN_verb_noun``); never edit one that has
shipped.  Each is tested on a blank database and on the previous version's.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("wilson")


@migrations()
def m001_create_capture_tables(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS blobs (
            hash TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            content TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            call_type TEXT,
            started_at TEXT,
            ended_at TEXT,
            metadata_json TEXT,
            deleted_at TEXT
        );
        CREATE TABLE IF NOT EXISTS interactions (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            sequence_num INTEGER NOT NULL,
            call_type TEXT,
            model TEXT,
            provider TEXT,
            system_hash TEXT REFERENCES blobs(hash),
            user_prompt TEXT,
            messages_json TEXT NOT NULL,
            response_content TEXT,
            tool_calls_json TEXT,
            tools_hash TEXT REFERENCES blobs(hash),
            params_json TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            total_tokens INTEGER,
            duration_ms REAL,
            status TEXT NOT NULL DEFAULT 'ok',
            error TEXT,
            created_at TEXT NOT NULL,
            context_hash TEXT
        );
        CREATE INDEX IF NOT EXISTS idx_interactions_run ON interactions(run_id, sequence_num);
        CREATE INDEX IF NOT EXISTS idx_interactions_created ON interactions(created_at);
        CREATE INDEX IF NOT EXISTS idx_interactions_context ON interactions(context_hash);
        CREATE TABLE IF NOT EXISTS tool_results (
            id TEXT PRIMARY KEY,
            interaction_id TEXT REFERENCES interactions(id),
            tool_call_id TEXT,
            tool_name TEXT,
            arguments_json TEXT,
            content TEXT,
            is_error INTEGER NOT NULL DEFAULT 0,
            duration_ms REAL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_tool_results_interaction ON tool_results(interaction_id);
        CREATE TABLE IF NOT EXISTS annotations (
            id TEXT PRIMARY KEY,
            interaction_id TEXT NOT NULL REFERENCES interactions(id),
            rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
            preference TEXT CHECK (preference IS NULL OR preference IN ('chosen', 'rejected', 'neutral')),
            pair_id TEXT,
            tags_json TEXT,
            notes TEXT,
            corrected_response TEXT,
            source TEXT NOT NULL DEFAULT 'human',
            annotator TEXT NOT NULL DEFAULT 'local',
            status TEXT NOT NULL DEFAULT 'accepted',
            version INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            undone_at TEXT
        );
        CREATE INDEX IF NOT EXISTS idx_annotations_interaction
            ON annotations(interaction_id, annotator, source, version);
        CREATE TABLE IF NOT EXISTS capture_counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL DEFAULT 0
        );
        """
    )


@migrations()
def m002_create_wilson_views(db: Database) -> None:
    """Views with Open Accountant Wilson's column names, for tools that read its schema."""
    db.executescript(
        """
        CREATE VIEW IF NOT EXISTS llm_interactions AS
        SELECT i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider,
               s.content AS system_prompt, i.user_prompt, i.response_content,
               i.tool_calls_json, t.content AS tool_defs_json,
               i.input_tokens, i.output_tokens, i.total_tokens, i.duration_ms,
               i.status, i.error, i.created_at
        FROM interactions i
        LEFT JOIN blobs s ON s.hash = i.system_hash
        LEFT JOIN blobs t ON t.hash = i.tools_hash;
        CREATE VIEW IF NOT EXISTS llm_tool_results AS
        SELECT id, interaction_id, tool_call_id, tool_name, arguments_json AS tool_args_json,
               content AS tool_result, duration_ms, created_at
        FROM tool_results;
        """
    )


@migrations()
def m003_create_current_annotations_view(db: Database) -> None:
    """The label that counts for each (interaction, annotator, source).

    Every annotation row holds the full merged state of that version, so the
    current label is the latest version that was not undone.
    """
    db.executescript(
        """
        CREATE VIEW IF NOT EXISTS current_annotations AS
        SELECT a.* FROM annotations a
        WHERE a.undone_at IS NULL
          AND a.version = (
              SELECT max(b.version) FROM annotations b
              WHERE b.interaction_id = a.interaction_id
                AND b.annotator = a.annotator
                AND b.source = a.source
                AND b.undone_at IS NULL
          );
        """
    )


@migrations()
def m004_create_pairs(db: Database) -> None:
    """Preference pairs: two answers to the same context, one chosen over the other.

    Pairs live in their own table so one answer can be in several pairs (a
    correction, a regenerated alternative, harvested pairs).  ``undone_at``
    marks a pair that was taken back.
    """
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS pairs (
            id TEXT PRIMARY KEY,
            chosen_id TEXT NOT NULL REFERENCES interactions(id),
            rejected_id TEXT NOT NULL REFERENCES interactions(id),
            source TEXT NOT NULL DEFAULT 'human',
            annotator TEXT NOT NULL DEFAULT 'local',
            created_at TEXT NOT NULL,
            undone_at TEXT
        );
        CREATE INDEX IF NOT EXISTS idx_pairs_chosen ON pairs(chosen_id);
        CREATE INDEX IF NOT EXISTS idx_pairs_rejected ON pairs(rejected_id);
        """
    )


@migrations()
def m005_create_run_trigger(db: Database) -> None:
    """Every interaction's run has a row: created on the first insert when it is missing.

    This lets the capture path write a call with one ``INSERT`` statement.
    """
    db.executescript(
        """
        CREATE TRIGGER IF NOT EXISTS interactions_create_run AFTER INSERT ON interactions
        BEGIN
            INSERT OR IGNORE INTO runs (id, call_type, started_at)
            VALUES (NEW.run_id, NEW.call_type, NEW.created_at);
        END;
        """
    )


@migrations()
def m006_create_search_index(db: Database) -> None:
    """Full-text search over prompts, responses and tool calls (FTS5), for the dashboard.

    No trigger on ``interactions`` (capture stays one fast insert): the index
    is filled lazily from the rowid watermark in ``search_index_state`` by
    :func:`wilson_core.store.search.sync` before each search.
    """
    db.executescript(
        """
        CREATE VIRTUAL TABLE IF NOT EXISTS interactions_fts USING fts5(
            user_prompt, response_content, tool_calls,
            content='', tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TABLE IF NOT EXISTS search_index_state (
            name TEXT PRIMARY KEY,
            last_rowid INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_annotations_source_status
            ON annotations(source, status, created_at);
        """
    )


@migrations()
def m007_add_interaction_ttft(db: Database) -> None:
    """Time to first token of streamed calls (``NULL`` for calls not streamed)."""
    if "ttft_ms" not in db["interactions"].columns_dict:
        db["interactions"].add_column("ttft_ms", float)


@migrations()
def m008_create_effective_labels_view(db: Database) -> None:
    """The label that counts for each interaction: the one definition export, dashboard and pairs read.

    See :data:`wilson_core.store.labels.EFFECTIVE_LABELS_VIEW`.
    """
    from .labels import EFFECTIVE_LABELS_VIEW

    db.executescript(EFFECTIVE_LABELS_VIEW + ";")


@migrations()
def m009_fold_search_accents(db: Database) -> None:
    """Nothing to do on SQLite: its index already folds accents (``remove_diacritics 2``).

    On PostgreSQL (:mod:`.pg_schema`, same name) search learns to fold them too.
    """
    del db


def apply(db: Database) -> None:
    """Bring ``db`` to the current schema."""
    migrations.apply(db)
