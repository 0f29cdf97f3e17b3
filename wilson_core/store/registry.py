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

Every SQL statement about these tables is in this module.
"""

from __future__ import annotations

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


def _migrations() -> Any:
    from sqlite_utils import Database, Migrations

    migrations = Migrations(MIGRATION_SET)

    @migrations()
    def m001_create_registry_tables(db: Database) -> None:
        db.executescript(_SCHEMA_V1)

    return migrations


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the registry's tables on ``conn``'s database when they are missing."""
    try:
        done = {r[0] for r in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (MIGRATION_SET,))}
    except sqlite3.OperationalError:
        done = set()
    if "m001_create_registry_tables" in done:
        return
    from sqlite_utils import Database

    _migrations().apply(Database(conn))


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
        if getattr(store, "dialect", "sqlite") != "sqlite":
            raise RegistryError("the model registry needs a SQLite database for now "
                                f"({store.dialect} is not supported yet)")
        if getattr(store, "read_only", False):
            if not _has_schema(store.connection()):
                self.store = _EmptyStore()  # nothing registered yet; and nothing can be, read-only
            return
        ensure_schema(store.connection())

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.connection()

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
        with transaction(self.conn) as conn:
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
        with transaction(self.conn) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO model_scores (model_id, pipeline_run, eval_set, evaluator, value, "
                "count, low, high, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                [(model_id, pipeline_run, s, e, v.value, v.count, v.low, v.high, now)
                 for (s, e), v in scores.items()],
            )

    def record_deployment(self, model_id: str, target: str, out: str, provider: str | None,
                          passed: bool | None) -> None:
        with transaction(self.conn) as conn:
            self._require(conn, model_id)
            conn.execute(
                "INSERT INTO model_deployments (model_id, target, out, provider, passed, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (model_id, target, out, provider, None if passed is None else int(passed), utcnow()),
            )

    def record_gate(self, model_id: str, decision: Mapping[str, Any]) -> None:
        """Keep the gate's decision; a refused candidate gets status ``refused``."""
        with transaction(self.conn) as conn:
            self._require(conn, model_id)
            conn.execute("UPDATE models SET gate_json = ? WHERE id = ?", (json.dumps(dict(decision)), model_id))
            if not decision.get("promote"):
                conn.execute("UPDATE models SET status = ? WHERE id = ? AND status = ?",
                             (REFUSED, model_id, CANDIDATE))
                self._event(conn, model_id, "refuse", decision.get("reason"))

    def promote(self, model_id: str, reason: str = "promoted by hand") -> str | None:
        """Make ``model_id`` live; returns the model that was live before (``None``: none)."""
        with transaction(self.conn) as conn:
            self._require(conn, model_id)
            previous = self._live(conn)
            if previous == model_id:
                return previous
            if previous:
                conn.execute("UPDATE models SET status = ? WHERE id = ?", (RETIRED, previous))
            conn.execute("UPDATE models SET status = ? WHERE id = ?", (LIVE, model_id))
            conn.execute("INSERT OR REPLACE INTO registry_live (name, model_id, since) VALUES ('live', ?, ?)",
                         (model_id, utcnow()))
            self._event(conn, model_id, "promote", reason, previous)
        return previous

    def rollback(self, reason: str = "rolled back by hand") -> tuple[str, str | None]:
        """Make the model live before the current one live again: ``(rolled back, now live)``.

        :raises RegistryError: no model is live, or the live one was the first.
        """
        with transaction(self.conn) as conn:
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
            conn.execute("INSERT OR REPLACE INTO registry_live (name, model_id, since) VALUES ('live', ?, ?)",
                         (previous, utcnow()))
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
        row = self.conn.execute("SELECT * FROM models WHERE id = ?", (full,)).fetchone()
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
        rows = self.conn.execute("SELECT * FROM models ORDER BY created_at, id").fetchall()
        return [self._entry(row) for row in rows]

    def examples(self, model_id: str, split: str | None = None) -> list[dict[str, Any]]:
        """The lineage of a model: interaction, split, annotation id and label version."""
        sql = ("SELECT interaction_id, split, annotation_id, label_version FROM model_examples "
               "WHERE model_id = ?" + (" AND split = ?" if split else "") + " ORDER BY split, interaction_id")
        params: Sequence[Any] = (model_id, split) if split else (model_id,)
        return [dict(zip(("interaction_id", "split", "annotation_id", "label_version"), r, strict=True))
                for r in self.conn.execute(sql, params)]

    def scores(self, model_id: str, pipeline_run: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM model_scores WHERE model_id = ?" + (" AND pipeline_run = ?" if pipeline_run else "")
        params: Sequence[Any] = (model_id, pipeline_run) if pipeline_run else (model_id,)
        cursor = self.conn.execute(sql + " ORDER BY pipeline_run, eval_set, evaluator", params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor]

    def events(self, model_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM model_events" + (" WHERE model_id = ?" if model_id else "") + " ORDER BY id"
        cursor = self.conn.execute(sql, (model_id,) if model_id else ())
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor]

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
        with transaction(self.conn) as conn:
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
        with transaction(self.conn) as conn:
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
    def _live(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT model_id FROM registry_live WHERE name = 'live'").fetchone()
        return row[0] if row else None

    @staticmethod
    def _require(conn: sqlite3.Connection, model_id: str) -> None:
        if not conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone():
            raise NotFound(f"no model {model_id!r} in the registry (see 'wilson models')")

    @staticmethod
    def _event(conn: sqlite3.Connection, model_id: str | None, action: str, reason: str | None,
               previous: str | None = None) -> None:
        conn.execute("INSERT INTO model_events (model_id, action, previous_live, reason, created_at) "
                     "VALUES (?,?,?,?,?)", (model_id, action, previous, reason, utcnow()))

    def _entry(self, row: sqlite3.Row | tuple[Any, ...]) -> ModelEntry:
        keys = ("id", "created_at", "pipeline_run", "base", "trainer", "train_settings_json", "export_hash",
                "export_manifest", "export_counts_json", "path", "status", "gate_json")
        data = dict(zip(keys, tuple(row), strict=True))
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
