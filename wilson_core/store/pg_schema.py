"""The schema on PostgreSQL: the same versioned migrations, by the same names, as :mod:`.schema`.

Each migration runs once, in a transaction, under an advisory lock (several
servers opening a new database at once migrate it once), and is recorded in
``wilson_migrations``.  Every table has a ``rowid bigserial`` column: the
insertion order SQLite keeps in its rowid, which exports and paging sort by.
"""

from __future__ import annotations

from typing import Any

from wilson_core.errors import StoreError

from .labels import CURRENT_ANNOTATIONS_VIEW, EFFECTIVE_LABELS_VIEW


def _view(sql: str) -> str:
    return sql.replace("CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW") + ";"


MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_create_capture_tables",
        """
        CREATE TABLE IF NOT EXISTS blobs (
            hash TEXT PRIMARY KEY, kind TEXT NOT NULL, content TEXT NOT NULL, rowid BIGSERIAL
        );
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY, call_type TEXT, started_at TEXT, ended_at TEXT,
            metadata_json TEXT, deleted_at TEXT, rowid BIGSERIAL
        );
        CREATE TABLE IF NOT EXISTS interactions (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            sequence_num BIGINT NOT NULL,
            call_type TEXT, model TEXT, provider TEXT,
            system_hash TEXT,
            user_prompt TEXT,
            messages_json TEXT NOT NULL,
            response_content TEXT,
            tool_calls_json TEXT,
            tools_hash TEXT,
            params_json TEXT,
            input_tokens BIGINT, output_tokens BIGINT, total_tokens BIGINT,
            duration_ms DOUBLE PRECISION,
            status TEXT NOT NULL DEFAULT 'ok',
            error TEXT,
            created_at TEXT NOT NULL,
            context_hash TEXT,
            rowid BIGSERIAL UNIQUE
        );
        CREATE INDEX IF NOT EXISTS idx_interactions_run ON interactions(run_id, sequence_num);
        CREATE INDEX IF NOT EXISTS idx_interactions_created ON interactions(created_at, rowid);
        CREATE INDEX IF NOT EXISTS idx_interactions_context ON interactions(context_hash);
        CREATE TABLE IF NOT EXISTS tool_results (
            id TEXT PRIMARY KEY, interaction_id TEXT, tool_call_id TEXT, tool_name TEXT,
            arguments_json TEXT, content TEXT, is_error INTEGER NOT NULL DEFAULT 0,
            duration_ms DOUBLE PRECISION, created_at TEXT NOT NULL, rowid BIGSERIAL
        );
        CREATE INDEX IF NOT EXISTS idx_tool_results_interaction ON tool_results(interaction_id);
        CREATE TABLE IF NOT EXISTS annotations (
            id TEXT PRIMARY KEY,
            interaction_id TEXT NOT NULL,
            rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
            preference TEXT CHECK (preference IS NULL OR preference IN ('chosen', 'rejected', 'neutral')),
            pair_id TEXT, tags_json TEXT, notes TEXT, corrected_response TEXT,
            source TEXT NOT NULL DEFAULT 'human',
            annotator TEXT NOT NULL DEFAULT 'local',
            status TEXT NOT NULL DEFAULT 'accepted',
            version INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            undone_at TEXT,
            rowid BIGSERIAL
        );
        CREATE INDEX IF NOT EXISTS idx_annotations_interaction
            ON annotations(interaction_id, annotator, source, version);
        CREATE TABLE IF NOT EXISTS capture_counters (
            name TEXT PRIMARY KEY, value BIGINT NOT NULL DEFAULT 0
        );
        """,
    ),
    (
        "m002_create_wilson_views",
        """
        CREATE OR REPLACE VIEW llm_interactions AS
        SELECT i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider,
               s.content AS system_prompt, i.user_prompt, i.response_content,
               i.tool_calls_json, t.content AS tool_defs_json,
               i.input_tokens, i.output_tokens, i.total_tokens, i.duration_ms,
               i.status, i.error, i.created_at
        FROM interactions i
        LEFT JOIN blobs s ON s.hash = i.system_hash
        LEFT JOIN blobs t ON t.hash = i.tools_hash;
        CREATE OR REPLACE VIEW llm_tool_results AS
        SELECT id, interaction_id, tool_call_id, tool_name, arguments_json AS tool_args_json,
               content AS tool_result, duration_ms, created_at
        FROM tool_results;
        """,
    ),
    ("m003_create_current_annotations_view", _view(CURRENT_ANNOTATIONS_VIEW)),
    (
        "m004_create_pairs",
        """
        CREATE TABLE IF NOT EXISTS pairs (
            id TEXT PRIMARY KEY,
            chosen_id TEXT NOT NULL,
            rejected_id TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'human',
            annotator TEXT NOT NULL DEFAULT 'local',
            created_at TEXT NOT NULL,
            undone_at TEXT,
            rowid BIGSERIAL
        );
        CREATE INDEX IF NOT EXISTS idx_pairs_chosen ON pairs(chosen_id);
        CREATE INDEX IF NOT EXISTS idx_pairs_rejected ON pairs(rejected_id);
        """,
    ),
    (
        "m005_create_run_trigger",
        """
        CREATE OR REPLACE FUNCTION wilson_create_run() RETURNS trigger AS $$
        BEGIN
            INSERT INTO runs (id, call_type, started_at)
            VALUES (NEW.run_id, NEW.call_type, NEW.created_at) ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS interactions_create_run ON interactions;
        CREATE TRIGGER interactions_create_run AFTER INSERT ON interactions
            FOR EACH ROW EXECUTE FUNCTION wilson_create_run();
        """,
    ),
    (
        "m006_create_search_index",
        r"""
        -- markup (<tag>, &entity;) would be dropped by the parser: its words are searched too
        CREATE OR REPLACE FUNCTION wilson_fts_doc(a TEXT, b TEXT, c TEXT) RETURNS tsvector AS $$
            SELECT to_tsvector('simple', translate(left(coalesce(a, ''), 100000) || ' ' ||
                                                   left(coalesce(b, ''), 100000) || ' ' ||
                                                   left(coalesce(c, ''), 100000), '<>&', '   '))
        $$ LANGUAGE sql IMMUTABLE;
        CREATE OR REPLACE FUNCTION wilson_tsquery(q TEXT) RETURNS tsquery AS $$
            SELECT to_tsquery('simple', coalesce(string_agg(
                quote_literal(replace(substring(t FROM '^"(.*)"\*?$'), '""', '"'))
                || CASE WHEN right(t, 1) = '*' THEN ':*' ELSE '' END, ' & '), ''))
            FROM regexp_split_to_table(q, '\s+') AS t WHERE t <> ''
        $$ LANGUAGE sql IMMUTABLE;
        CREATE INDEX IF NOT EXISTS idx_interactions_fts ON interactions
            USING gin (wilson_fts_doc(user_prompt, response_content, tool_calls_json));
        CREATE INDEX IF NOT EXISTS idx_annotations_source_status
            ON annotations(source, status, created_at);
        """,
    ),
    ("m007_add_interaction_ttft", "ALTER TABLE interactions ADD COLUMN IF NOT EXISTS ttft_ms DOUBLE PRECISION;"),
    ("m008_create_effective_labels_view", _view(EFFECTIVE_LABELS_VIEW)),
    (
        "m009_fold_search_accents",
        r"""
        -- search folds accents as SQLite's unicode61 remove_diacritics does: 'cafe' finds 'Café'.
        -- normalize() is PostgreSQL 13+ and needs a UTF8 database; elsewhere words stay as written.
        DO $do$
        BEGIN
            IF current_setting('server_encoding') = 'UTF8'
               AND current_setting('server_version_num')::int >= 130000 THEN
                CREATE OR REPLACE FUNCTION wilson_fold(t TEXT) RETURNS TEXT AS $f$
                    SELECT regexp_replace(normalize(t, NFD), '[\u0300-\u036f]', '', 'g')
                $f$ LANGUAGE sql IMMUTABLE STRICT;
            ELSE
                CREATE OR REPLACE FUNCTION wilson_fold(t TEXT) RETURNS TEXT AS $f$
                    SELECT t
                $f$ LANGUAGE sql IMMUTABLE STRICT;
            END IF;
        END $do$;
        CREATE OR REPLACE FUNCTION wilson_fts_doc(a TEXT, b TEXT, c TEXT) RETURNS tsvector AS $$
            SELECT to_tsvector('simple', wilson_fold(translate(left(coalesce(a, ''), 100000) || ' ' ||
                                                               left(coalesce(b, ''), 100000) || ' ' ||
                                                               left(coalesce(c, ''), 100000), '<>&', '   ')))
        $$ LANGUAGE sql IMMUTABLE;
        CREATE OR REPLACE FUNCTION wilson_tsquery(q TEXT) RETURNS tsquery AS $$
            SELECT to_tsquery('simple', coalesce(string_agg(
                quote_literal(wilson_fold(replace(substring(t FROM '^"(.*)"\*?$'), '""', '"')))
                || CASE WHEN right(t, 1) = '*' THEN ':*' ELSE '' END, ' & '), ''))
            FROM regexp_split_to_table(q, '\s+') AS t WHERE t <> ''
        $$ LANGUAGE sql IMMUTABLE;
        -- the index holds the words as the old function made them
        REINDEX INDEX idx_interactions_fts;
        """,
    ),
]

_LEDGER = """
CREATE TABLE IF NOT EXISTS wilson_migrations (
    migration_set TEXT NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,
    rowid BIGSERIAL, PRIMARY KEY (migration_set, name)
)
"""


def names() -> list[str]:
    return [name for name, _ in MIGRATIONS]


def applied(conn: Any) -> list[str]:
    try:
        return [row[0] for row in conn.execute(
            "SELECT name FROM wilson_migrations WHERE migration_set = 'wilson' ORDER BY rowid"
        )]
    except Exception:
        return []


def migrate(conn: Any, *, create: bool = True, where: str = "", upto: str | None = None) -> list[str]:
    """Apply the pending migrations (up to and including ``upto``); return the names applied."""
    raw = conn._conn
    done = set(applied(conn))
    wanted = names() if upto is None else names()[: names().index(upto) + 1]
    if set(wanted) <= done:
        return []
    if not done and not create:
        tables = raw.execute("SELECT to_regclass('interactions')").fetchone()[0]
        if tables is None:
            raise StoreError(f"no Wilson database at {where}")
    made = []
    with raw.transaction():
        raw.execute("SELECT pg_advisory_xact_lock(hashtext('wilson-migrate'))")
        raw.execute(_LEDGER)
        done = {row[0] for row in raw.execute(
            "SELECT name FROM wilson_migrations WHERE migration_set = 'wilson'"
        )}
        for name, ddl in MIGRATIONS:
            if name not in wanted or name in done:
                continue
            raw.execute(ddl)
            raw.execute(
                "INSERT INTO wilson_migrations (migration_set, name, applied_at) "
                "VALUES ('wilson', %s, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'))",
                (name,),
            )
            made.append(name)
    return made
