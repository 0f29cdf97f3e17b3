"""The model registry: trained models, their lineage, scores, deployments and which is live.

Its tables are a migration set of their own (``wilson_registry``), applied the first
time a registry is opened on a database, so a database that never trained a model
does not carry them:

- ``models``: one row per trained model; its id is derived from the export's content
  hash and the training settings, so re-running (or resuming) the same training gives
  the same entry;
- ``model_examples``: lineage: every interaction in the model's export, with the split
  and the label (annotation id and version) that counted when it was exported;
- ``model_scores``: eval scores per pipeline run, eval set and evaluator, for the
  candidate and for the system it was compared with (``base:...`` or a model id);
- ``model_deployments``; ``model_events`` (register, promote, refuse, rollback, with the
  reason); ``registry_live`` (the one live model);
- ``ab_items``, ``ab_answers``, ``ab_picks``: blind A/B review (see
  :mod:`wilson_core.pipeline.ab`).

Every SQL statement about these tables is in this module.  It is written once, in
SQLite's dialect, and runs on both backends (a PostgreSQL store translates it on its way
to the server); the tables' DDL is the one place where the two differ (:func:`pg_schema`).
On PostgreSQL the set is recorded in ``wilson_migrations`` (``migration_set =
'wilson_registry'``) and applied once under an advisory lock, and registry writes take
turns under another (``wilson-registry``), so two servers promoting at once serialise.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from wilson_core.errors import NotFound, WilsonError
from wilson_core.records import utcnow

from .connections import transaction

MIGRATION_SET = "wilson_registry"

#: statuses of a model.
CANDIDATE, LIVE, RETIRED, REFUSED, ROLLED_BACK = "candidate", "live", "retired", "refused", "rolled-back"

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    pipeline_run TEXT,
    base TEXT NOT NULL,
    trainer TEXT NOT NULL,
    train_settings_json TEXT NOT NULL,
    export_hash TEXT NOT NULL,
    export_manifest TEXT,
    export_counts_json TEXT,
    path TEXT,
    status TEXT NOT NULL DEFAULT 'candidate',
    gate_json TEXT
);
CREATE TABLE IF NOT EXISTS model_examples (
    model_id TEXT NOT NULL REFERENCES models(id),
    interaction_id TEXT NOT NULL,
    split TEXT NOT NULL,
    annotation_id TEXT,
    label_version INTEGER,
    PRIMARY KEY (model_id, split, interaction_id)
);
CREATE INDEX IF NOT EXISTS idx_model_examples_interaction ON model_examples(interaction_id);
CREATE TABLE IF NOT EXISTS model_scores (
    model_id TEXT NOT NULL,
    pipeline_run TEXT NOT NULL,
    eval_set TEXT NOT NULL,
    evaluator TEXT NOT NULL,
    value REAL,
    count INTEGER NOT NULL,
    low REAL,
    high REAL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model_id, pipeline_run, eval_set, evaluator)
);
CREATE TABLE IF NOT EXISTS model_deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL REFERENCES models(id),
    target TEXT NOT NULL,
    out TEXT NOT NULL,
    provider TEXT,
    passed INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT,
    action TEXT NOT NULL,
    previous_live TEXT,
    reason TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_live (
    name TEXT PRIMARY KEY,
    model_id TEXT,
    since TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ab_items (
    id TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    case_id TEXT NOT NULL,
    eval_set TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ab_answers (
    item_id TEXT NOT NULL REFERENCES ab_items(id),
    slot INTEGER NOT NULL,
    system TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    PRIMARY KEY (item_id, slot)
);
CREATE TABLE IF NOT EXISTS ab_picks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL REFERENCES ab_items(id),
    chosen_slot INTEGER,
    reviewer TEXT NOT NULL DEFAULT 'local',
    pair_ids_json TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_ab_picks_item ON ab_picks(item_id);
"""


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def pg_schema() -> list[str]:
    """The registry's DDL for PostgreSQL, one statement each (integer keys become ``bigserial``)."""
    text = (_SCHEMA_V1.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
            .replace(" REAL", " DOUBLE PRECISION"))
    return _statements(text)


def _ensure_pg_schema(conn: Any) -> None:
    applied = "SELECT 1 FROM wilson_migrations WHERE migration_set = ? AND name = ?"
    name = "m001_create_registry_tables"
    if conn.execute(applied, (MIGRATION_SET, name)).fetchone():
        return
    from .postgres import _Transaction

    with _Transaction(conn, lock="wilson-migrate") as locked:
        if locked.execute(applied, (MIGRATION_SET, name)).fetchone():
            return  # another process made them while this one waited for the lock
        for statement in pg_schema():
            locked.execute(statement)
        locked.execute("INSERT INTO wilson_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
                       (MIGRATION_SET, name, utcnow()))


def ensure_schema(conn: Any, dialect: str = "sqlite") -> None:
    """Create the registry's tables on ``conn``'s database when they are missing."""
    if dialect == "postgresql":
        _ensure_pg_schema(conn)
        return
    name = "m001_create_registry_tables"
    if _sqlite_applied(conn, name):
        return
    # In one write transaction, so that two processes opening the registry at once make the
    # tables once (the second finds them recorded) and a failure leaves nothing half made.
    # The ledger is sqlite_utils' own, in its format, beside the store's migration set.
    with transaction(conn):
        if _sqlite_applied(conn, name):
            return
        conn.execute("CREATE TABLE IF NOT EXISTS [_sqlite_migrations] ([id] INTEGER PRIMARY KEY, "
                     "[migration_set] TEXT, [name] TEXT, [applied_at] TEXT)")
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS [idx__sqlite_migrations_migration_set_name] "
                     "ON [_sqlite_migrations] ([migration_set], [name])")
        for statement in _statements(_SCHEMA_V1):
            conn.execute(statement)
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
                     (MIGRATION_SET, name, str(datetime.datetime.now(datetime.timezone.utc))))


def _sqlite_applied(conn: Any, name: str) -> bool:
    try:
        return conn.execute("SELECT 1 FROM _sqlite_migrations WHERE migration_set = ? AND name = ?",
                            (MIGRATION_SET, name)).fetchone() is not None
    except sqlite3.OperationalError:  # no ledger yet
        return False


_SCORE_COLUMNS = ("model_id", "pipeline_run", "eval_set", "evaluator", "value", "count", "low", "high",
                  "created_at")
_EVENT_COLUMNS = ("id", "model_id", "action", "previous_live", "reason", "created_at")
_MODEL_COLUMNS = ("id", "created_at", "pipeline_run", "base", "trainer", "train_settings_json", "export_hash",
                  "export_manifest", "export_counts_json", "path", "status", "gate_json")

#: training settings that do not change the model (how often it logs or saves a checkpoint).
NOT_IN_ID = ("logging_steps", "save_steps", "eval_steps")


def _has_schema(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'models'").fetchone() is not None


class _EmptyStore:
    """A read-only database without the registry's tables reads as an empty registry."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._conn.executescript(_SCHEMA_V1 + "CREATE TABLE annotations (created_at TEXT); "
                                 "CREATE TABLE pairs (created_at TEXT); "
                                 "CREATE TABLE effective_labels (interaction_id TEXT, id TEXT, version INTEGER);")

    def connection(self) -> sqlite3.Connection:
        return self._conn


def model_id_for(export_hash: str, trainer: str, base: str, settings: Mapping[str, Any]) -> str:
    """The id of the model trained on an export with these settings (``m-`` + 12 hex digits);
    settings that only change logging and checkpointing (:data:`NOT_IN_ID`) are left out."""
    kept = {k: v for k, v in settings.items() if k not in NOT_IN_ID}
    text = json.dumps([export_hash, trainer, base, kept], sort_keys=True, default=str)
    return "m-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@frozen
class ModelEntry:
    """One trained model as the registry holds it."""

    id: str
    created_at: str
    base: str
    trainer: str
    train_settings: dict[str, Any]
    export_hash: str
    export_manifest: str | None
    export_counts: dict[str, Any]
    path: str | None
    status: str
    pipeline_run: str | None = None
    gate: dict[str, Any] | None = None
    live: bool = False
    scores: tuple[dict[str, Any], ...] = field(default=(), converter=tuple)
    deployments: tuple[dict[str, Any], ...] = field(default=(), converter=tuple)

    def describe(self) -> dict[str, Any]:
        from attrs import asdict

        data = asdict(self)
        data["scores"], data["deployments"] = list(self.scores), list(self.deployments)
        return data


class RegistryError(WilsonError):
    """A registry change that cannot be made (unknown model, nothing to roll back to)."""


class Registry:
    """The registry over one Wilson store (``Registry(store)``)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.dialect = getattr(store, "dialect", "sqlite")
        if self.dialect not in ("sqlite", "postgresql"):
            raise RegistryError(f"the model registry does not support {self.dialect} databases")
        if getattr(store, "read_only", False):
            if not _has_schema(store.connection()):
                self.store = _EmptyStore()  # nothing registered yet; and nothing can be, read-only
            return
        ensure_schema(store.connection(), self.dialect)

    @property
    def conn(self) -> Any:
        return self.store.connection()

    def _writing(self) -> Any:
        """A write transaction (on PostgreSQL under the registry's advisory lock)."""
        if self.dialect == "postgresql":
            from .postgres import _Transaction

            return _Transaction(self.conn, lock="wilson-registry")
        return transaction(self.conn)

    # -- writing --------------------------------------------------------

    def register(
        self, model_id: str, *, base: str, trainer: str, settings: Mapping[str, Any], export_hash: str,
        manifest: str | None, counts: Mapping[str, Any], path: str | None, pipeline_run: str | None,
        examples: Iterable[tuple[str, str, str | None, int | None]],
    ) -> bool:
        """Add a model and its lineage ``(interaction_id, split, annotation_id, version)``.

        Returns ``False`` (and changes nothing) when the model is already registered:
        the same export trained with the same settings is the same model.
        """
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO models (id, created_at, pipeline_run, base, trainer, train_settings_json, "
                "export_hash, export_manifest, export_counts_json, path, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (model_id, utcnow(), pipeline_run, base, trainer, json.dumps(dict(settings), sort_keys=True),
                 export_hash, manifest, json.dumps(dict(counts), sort_keys=True), path, CANDIDATE),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO model_examples (model_id, interaction_id, split, annotation_id, "
                "label_version) VALUES (?,?,?,?,?)",
                ((model_id, *row) for row in examples),
            )
            self._event(conn, model_id, "register", None)
        return True

    def record_scores(self, model_id: str, pipeline_run: str, scores: Mapping[tuple[str, str], Any]) -> None:
        """Store ``{(eval_set, evaluator): EvalScore}`` of ``model_id`` (or ``base:NAME``) for a run."""
        now = utcnow()
        with self._writing() as conn:
            conn.executemany(
                "INSERT INTO model_scores (model_id, pipeline_run, eval_set, evaluator, value, "
                "count, low, high, created_at) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (model_id, pipeline_run, eval_set, evaluator) DO UPDATE SET value = excluded.value, "
                "count = excluded.count, low = excluded.low, high = excluded.high, created_at = excluded.created_at",
                [(model_id, pipeline_run, s, e, v.value, v.count, v.low, v.high, now)
                 for (s, e), v in scores.items()],
            )

    def record_deployment(self, model_id: str, target: str, out: str, provider: str | None,
                          passed: bool | None) -> None:
        with self._writing() as conn:
            self._require(conn, model_id)
            conn.execute(
                "INSERT INTO model_deployments (model_id, target, out, provider, passed, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (model_id, target, out, provider, None if passed is None else int(passed), utcnow()),
            )

    def record_gate(self, model_id: str, decision: Mapping[str, Any]) -> None:
        """Keep the gate's decision; a refused candidate gets status ``refused``."""
        with self._writing() as conn:
            self._require(conn, model_id)
            conn.execute("UPDATE models SET gate_json = ? WHERE id = ?", (json.dumps(dict(decision)), model_id))
            if not decision.get("promote"):
                conn.execute("UPDATE models SET status = ? WHERE id = ? AND status = ?",
                             (REFUSED, model_id, CANDIDATE))
                self._event(conn, model_id, "refuse", decision.get("reason"))

    def promote(self, model_id: str, reason: str = "promoted by hand") -> str | None:
        """Make ``model_id`` live; returns the model that was live before (``None``: none)."""
        with self._writing() as conn:
            self._require(conn, model_id)
            previous = self._live(conn)
            if previous == model_id:
                return previous
            if previous:
                conn.execute("UPDATE models SET status = ? WHERE id = ?", (RETIRED, previous))
            conn.execute("UPDATE models SET status = ? WHERE id = ?", (LIVE, model_id))
            self._set_live(conn, model_id)
            self._event(conn, model_id, "promote", reason, previous)
        return previous

    def rollback(self, reason: str = "rolled back by hand") -> tuple[str, str | None]:
        """Make the model live before the current one live again: ``(rolled back, now live)``.

        :raises RegistryError: no model is live, or the live one was the first.
        """
        with self._writing() as conn:
            current = self._live(conn)
            if current is None:
                raise RegistryError("no model is live: nothing to roll back")
            row = conn.execute(
                "SELECT previous_live FROM model_events WHERE model_id = ? AND action IN ('promote', 'rollback') "
                "ORDER BY id DESC LIMIT 1", (current,)).fetchone()
            previous = row[0] if row else None
            if previous is None:
                raise RegistryError(f"{current} was the first live model: there is no earlier one to roll back to")
            conn.execute("UPDATE models SET status = ? WHERE id = ?", (ROLLED_BACK, current))
            conn.execute("UPDATE models SET status = ? WHERE id = ?", (LIVE, previous))
            self._set_live(conn, previous)
            # the new live model's own rollback target is what preceded it when it was promoted
            before = conn.execute(
                "SELECT previous_live FROM model_events WHERE model_id = ? AND action IN ('promote', 'rollback') "
                "ORDER BY id DESC LIMIT 1", (previous,)).fetchone()
            self._event(conn, current, "rolled-back", reason, previous)
            self._event(conn, previous, "rollback", reason, before[0] if before else None)
        return current, previous

    # -- reading --------------------------------------------------------

    def live(self) -> str | None:
        """The id of the live model, or ``None``."""
        return self._live(self.conn)

    def live_version(self) -> tuple[Any, ...] | None:
        """A token that changes whenever :meth:`live_provider` may: the live model, since when,
        and its newest deployment (one small query; ``None`` when no model is live)."""
        row = self.conn.execute(
            "SELECT l.model_id, l.since, (SELECT max(d.id) FROM model_deployments d WHERE d.model_id = l.model_id) "
            "FROM registry_live l WHERE l.name = 'live'").fetchone()
        return tuple(row) if row and row[0] is not None else None

    def live_provider(self, prefer: Sequence[str] = ("llamacpp", "onnx", "ollama")) -> str | None:
        """The ``LLM(provider=...)`` string that runs the live model now, or ``None`` when none is live.

        A deployment's provider (in the order of ``prefer``) when the live model was deployed,
        else ``transformers:FOLDER`` on its training folder.  Read it on each request to switch
        with a promotion or a rollback without restarting.
        """
        live = self.live()
        if live is None:
            return None
        rows = self.conn.execute("SELECT provider FROM model_deployments WHERE model_id = ? AND provider IS NOT NULL "
                                 "ORDER BY id DESC", (live,)).fetchall()
        providers = [r[0] for r in rows]
        for kind in prefer:
            found = next((p for p in providers if p.split(":", 1)[0] == kind), None)
            if found:
                return found
        if providers:
            return providers[0]
        path = self.conn.execute("SELECT path FROM models WHERE id = ?", (live,)).fetchone()[0]
        return f"transformers:{path}" if path else None

    def get(self, model_id: str) -> ModelEntry:
        """One model with its scores and deployments (a unique id prefix is enough).

        :raises NotFound: no model has that id.
        """
        full = self.resolve(model_id)
        row = self.conn.execute(f"SELECT {', '.join(_MODEL_COLUMNS)} FROM models WHERE id = ?", (full,)).fetchone()
        return self._entry(row)

    def resolve(self, model_id: str) -> str:
        rows = [r[0] for r in self.conn.execute(
            "SELECT id FROM models WHERE id = ? OR id LIKE ? ORDER BY id", (model_id, model_id + "%"))]
        if model_id in rows:
            return model_id
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise NotFound(f"no model {model_id!r} in the registry (see 'wilson models')")
        raise RegistryError(f"{model_id!r} matches several models: {', '.join(rows)}")

    def models(self) -> list[ModelEntry]:
        """Every registered model, oldest first."""
        rows = self.conn.execute(f"SELECT {', '.join(_MODEL_COLUMNS)} FROM models ORDER BY created_at, id").fetchall()
        return [self._entry(row) for row in rows]

    def examples(self, model_id: str, split: str | None = None) -> list[dict[str, Any]]:
        """The lineage of a model: interaction, split, annotation id and label version."""
        sql = ("SELECT interaction_id, split, annotation_id, label_version FROM model_examples "
               "WHERE model_id = ?" + (" AND split = ?" if split else "") + " ORDER BY split, interaction_id")
        params: Sequence[Any] = (model_id, split) if split else (model_id,)
        return [dict(zip(("interaction_id", "split", "annotation_id", "label_version"), r, strict=True))
                for r in self.conn.execute(sql, params)]

    def scores(self, model_id: str, pipeline_run: str | None = None) -> list[dict[str, Any]]:
        sql = (f"SELECT {', '.join(_SCORE_COLUMNS)} FROM model_scores WHERE model_id = ?"
               + (" AND pipeline_run = ?" if pipeline_run else ""))
        params: Sequence[Any] = (model_id, pipeline_run) if pipeline_run else (model_id,)
        cursor = self.conn.execute(sql + " ORDER BY pipeline_run, eval_set, evaluator", params)
        return [dict(zip(_SCORE_COLUMNS, r, strict=True)) for r in cursor]

    def events(self, model_id: str | None = None) -> list[dict[str, Any]]:
        sql = (f"SELECT {', '.join(_EVENT_COLUMNS)} FROM model_events"
               + (" WHERE model_id = ?" if model_id else "") + " ORDER BY id")
        cursor = self.conn.execute(sql, (model_id,) if model_id else ())
        return [dict(zip(_EVENT_COLUMNS, r, strict=True)) for r in cursor]

    def labels_since(self, since: str | None) -> int:
        """How many labels (annotation versions and pairs) were added after ``since`` (all when ``None``)."""
        if since is None:
            return (self.conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
                    + self.conn.execute("SELECT count(*) FROM pairs").fetchone()[0])
        return (self.conn.execute("SELECT count(*) FROM annotations WHERE created_at > ?", (since,)).fetchone()[0]
                + self.conn.execute("SELECT count(*) FROM pairs WHERE created_at > ?", (since,)).fetchone()[0])

    def current_labels(self, interaction_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """The label that counts for each interaction now (view ``effective_labels``):
        ``{id: (annotation_id, version)}``; interactions without a label are left out."""
        found: dict[str, tuple[str, int]] = {}
        for start in range(0, len(interaction_ids), 500):
            chunk = list(interaction_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for iid, aid, version in self.conn.execute(
                    f"SELECT interaction_id, id, version FROM effective_labels WHERE interaction_id IN ({marks})",
                    chunk):
                found[iid] = (aid, version)
        return found

    # -- A/B review ------------------------------------------------------

    def add_ab_item(self, item_id: str, batch: str, case_id: str, eval_set: str,
                    answers: Sequence[tuple[str, str]]) -> None:
        """An A/B item: ``answers`` are ``(system, interaction_id)`` in the order they are shown."""
        with self._writing() as conn:
            conn.execute("INSERT INTO ab_items (id, batch, case_id, eval_set, created_at) VALUES (?,?,?,?,?)",
                         (item_id, batch, case_id, eval_set, utcnow()))
            conn.executemany("INSERT INTO ab_answers (item_id, slot, system, interaction_id) VALUES (?,?,?,?)",
                             [(item_id, slot, system, iid) for slot, (system, iid) in enumerate(answers)])

    def ab_item(self, item_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT id, batch, case_id, eval_set FROM ab_items WHERE id = ?",
                                (item_id,)).fetchone()
        if row is None:
            raise NotFound(f"no A/B item {item_id!r}")
        answers = [{"slot": s, "system": sy, "interaction_id": i} for s, sy, i in self.conn.execute(
            "SELECT slot, system, interaction_id FROM ab_answers WHERE item_id = ? ORDER BY slot", (item_id,))]
        picks = self.conn.execute("SELECT count(*) FROM ab_picks WHERE item_id = ?", (item_id,)).fetchone()[0]
        return {"id": row[0], "batch": row[1], "case_id": row[2], "eval_set": row[3], "answers": answers,
                "picks": picks}

    def next_ab_item(self, batch: str | None = None) -> str | None:
        """The oldest item without a pick (of ``batch`` when given)."""
        sql = ("SELECT i.id FROM ab_items i WHERE NOT EXISTS (SELECT 1 FROM ab_picks p WHERE p.item_id = i.id)"
               + (" AND i.batch = ?" if batch else "") + " ORDER BY i.created_at, i.id LIMIT 1")
        row = self.conn.execute(sql, (batch,) if batch else ()).fetchone()
        return row[0] if row else None

    def ab_counts(self, batch: str | None = None) -> dict[str, int]:
        where = " WHERE batch = ?" if batch else ""
        params = (batch,) if batch else ()
        items = self.conn.execute(f"SELECT count(*) FROM ab_items{where}", params).fetchone()[0]
        picked = self.conn.execute(
            f"SELECT count(DISTINCT p.item_id) FROM ab_picks p JOIN ab_items i ON i.id = p.item_id{where}",
            params).fetchone()[0]
        return {"items": items, "picked": picked}

    def add_ab_pick(self, item_id: str, chosen_slot: int | None, reviewer: str, pair_ids: Sequence[str]) -> None:
        with self._writing() as conn:
            conn.execute("INSERT INTO ab_picks (item_id, chosen_slot, reviewer, pair_ids_json, created_at) "
                         "VALUES (?,?,?,?,?)", (item_id, chosen_slot, reviewer, json.dumps(list(pair_ids)), utcnow()))

    def ab_outcomes(self, system: str, against: str | None = None) -> list[float]:
        """``system``'s result in each pick where it was shown (1 chosen, 0.5 tie, 0 another chosen);
        with ``against``, only picks where that system was shown too."""
        rows = self.conn.execute(
            "SELECT p.item_id, p.chosen_slot, a.slot FROM ab_picks p "
            "JOIN ab_answers a ON a.item_id = p.item_id AND a.system = ? ORDER BY p.id", (system,)).fetchall()
        outcomes = []
        for item_id, chosen, slot in rows:
            if against is not None and not self.conn.execute(
                    "SELECT 1 FROM ab_answers WHERE item_id = ? AND system = ?", (item_id, against)).fetchone():
                continue
            outcomes.append(0.5 if chosen is None else float(chosen == slot))
        return outcomes

    # -- helpers ----------------------------------------------------------

    @staticmethod
    def _live(conn: Any) -> str | None:
        row = conn.execute("SELECT model_id FROM registry_live WHERE name = 'live'").fetchone()
        return row[0] if row else None

    @staticmethod
    def _set_live(conn: Any, model_id: str) -> None:
        conn.execute("INSERT INTO registry_live (name, model_id, since) VALUES ('live', ?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET model_id = excluded.model_id, since = excluded.since",
                     (model_id, utcnow()))

    @staticmethod
    def _require(conn: Any, model_id: str) -> None:
        if not conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone():
            raise NotFound(f"no model {model_id!r} in the registry (see 'wilson models')")

    @staticmethod
    def _event(conn: Any, model_id: str | None, action: str, reason: str | None,
               previous: str | None = None) -> None:
        conn.execute("INSERT INTO model_events (model_id, action, previous_live, reason, created_at) "
                     "VALUES (?,?,?,?,?)", (model_id, action, previous, reason, utcnow()))

    def _entry(self, row: sqlite3.Row | tuple[Any, ...]) -> ModelEntry:
        data = dict(zip(_MODEL_COLUMNS, tuple(row), strict=True))
        deployments = [dict(zip(("target", "out", "provider", "passed", "created_at"), r, strict=True))
                       for r in self.conn.execute(
                           "SELECT target, out, provider, passed, created_at FROM model_deployments "
                           "WHERE model_id = ? ORDER BY id", (data["id"],))]
        return ModelEntry(
            id=data["id"], created_at=data["created_at"], base=data["base"], trainer=data["trainer"],
            train_settings=json.loads(data["train_settings_json"]), export_hash=data["export_hash"],
            export_manifest=data["export_manifest"], export_counts=json.loads(data["export_counts_json"] or "{}"),
            path=data["path"], status=data["status"], pipeline_run=data["pipeline_run"],
            gate=json.loads(data["gate_json"]) if data["gate_json"] else None,
            live=self.live() == data["id"], scores=self.scores(data["id"], data["pipeline_run"]),
            deployments=deployments,
        )
