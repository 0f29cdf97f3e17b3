"""``[tool.wilson.pipeline]``: read, check and resolve the loop's configuration.

Everything is checked before any stage runs: unknown driver names list what is
installed (read from entry points, nothing imported), bad options name the key and
the table, and only the drivers named are imported to check their options.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from wilson_core.errors import WilsonError

TABLE = "tool.wilson.pipeline"

#: keys of each table (with ``-`` or ``_``) and what they hold.
TOP_KEYS = {"runs", "db", "export", "train", "eval", "gate", "deploy"}
EXPORT_KEYS = {"formats", "options", "call_type", "min_rating", "model", "provider", "since", "until", "tag",
               "include_judge", "granularity", "eval_split", "seed", "dedup", "max_tokens", "tokenizer",
               "redact", "kto_desirable", "kto_undesirable", "keep_long", "harvest_pairs", "filters"}
#: the export filters (everything in ``[export]`` but the formats and the per-format tables).
FILTER_KEYS = EXPORT_KEYS - {"formats", "options", "filters"}
EVAL_KEYS = {"sets", "evaluators", "provider", "max_tokens", "limit", "judge", "ab_review", "compare"}
#: ``[...eval] compare``: its keys, and the evaluators it scores (its metric of each).
COMPARE_KEYS = {"batch_size", "samples", "log_likelihood"}
COMPARE_METRICS = {"exact-match": "exact_match", "token-f1": "token_f1", "tool-call": "tool_call_accuracy"}
#: the suffix of a set scored in free decoding when ``compare`` also scores its constraint.
FREE = "/free"
GATE_KEYS = {"metric", "set", "margin", "tolerance", "min_count"}
DEPLOY_KEYS = {"quant", "verify", "host", "name", "force", "options"}
#: the set name that means "the eval split of the export the model was trained on".
EXPORT_SET = "export"


class ConfigError(WilsonError):
    """The pipeline table is wrong; the message names the table and the key."""


@frozen
class GateRule:
    """Promote when ``metric`` on ``set`` beats the reference by ``margin``, and no
    (set, evaluator) score falls more than ``tolerance`` below the reference's."""

    metric: str
    set: str = "all"
    margin: float = 0.0
    tolerance: float = 0.05
    min_count: int = 1


@frozen
class PipelineConfig:
    """The resolved table: paths absolute, names checked, options per driver."""

    root: Path
    runs: Path
    #: a file path, or a PostgreSQL URL
    db: Path | str | None
    formats: tuple[str, ...]
    export_filters: dict[str, Any]
    exporter_options: dict[str, dict[str, Any]]
    trainer: str
    train_data: str
    train_settings: dict[str, Any]
    sets: dict[str, str]
    evaluators: dict[str, dict[str, Any]]
    provider: str
    max_tokens: int
    limit: int | None
    judge: str | None
    gate: GateRule
    #: how many held-out cases to put up for blind A/B review after evaluation (0: none).
    ab_review: int
    deployers: dict[str, dict[str, Any]] = field(factory=dict)
    #: ``[export.filters.FORMAT]``: filters of one format only, over the shared ones.
    format_filters: dict[str, dict[str, Any]] = field(factory=dict)
    #: ``[train.then]``: a second training on the first one's merged model (e.g. DPO after SFT):
    #: ``{"trainer": NAME, "data": FORMAT, "settings": {...}}``.
    then: dict[str, Any] | None = None
    #: ``wilson eval``'s batched comparison settings (``None``: generate through ``provider``).
    compare: dict[str, Any] | None = None

    @property
    def base(self) -> str:
        return str(self.train_settings["base"])


def _keys(table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in table.items()}


def _table(data: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] {name} must be a table, got {type(value).__name__}")
    return value


def _unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"[{where}]: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _check_names(namespace: str, names: list[str], where: str, key: str) -> None:
    from wilson_core.plugins import driver_names

    installed = driver_names(namespace)
    for name in names:
        if name not in installed:
            raise ConfigError(
                f"[{where}] {key}: no {namespace} driver named {name!r}; installed: "
                + (", ".join(installed) or "none"))


def read_table(path: Path) -> dict[str, Any]:
    """The ``[tool.wilson.pipeline]`` table of ``path``.

    :raises ConfigError: no such file, not TOML, or no such table.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    if not path.is_file():
        raise ConfigError(f"no {path} (the pipeline is configured in [{TABLE}] of a pyproject.toml)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("wilson", {}).get("pipeline")
    if table is None:
        raise ConfigError(f"{path} has no [{TABLE}] table (see docs/pipeline.md)")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{TABLE}] must be a table")
    return table


def load(path: str | os.PathLike[str], db: str | None = None) -> PipelineConfig:
    """Read and check the table of ``path`` (a pyproject.toml); ``db`` overrides its ``db``."""
    file = Path(path).resolve()
    return resolve(read_table(file), file.parent, db)


def _path(root: Path, value: Any, where: str, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"[{where}] {key} must be a path (text), got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _db(value: Any, root: Path | None = None) -> Path | str:
    """The database: a PostgreSQL URL as it is (a path would fold its ``//``), else a path."""
    from wilson_core.store.postgres import is_postgres_url

    if is_postgres_url(value):
        return str(value)
    return Path(value) if root is None else _path(root, value, TABLE, "db")


def resolve(table: Mapping[str, Any], root: Path, db: str | None = None) -> PipelineConfig:
    """Check ``table`` and resolve it against the folder ``root`` of its pyproject.toml."""
    from wilson_core.interfaces import DEPLOYERS, EXPORTERS, TRAINERS

    top = _keys(table)
    _unknown(top, TOP_KEYS, TABLE)
    runs = _path(root, top.get("runs", "wilson-runs"), TABLE, "runs")
    db_path = _db(db) if db else (_db(top["db"], root) if "db" in top else None)

    # export
    where = f"{TABLE}.export"
    export = _keys(_table(top, "export", TABLE))
    _unknown(export, EXPORT_KEYS, where)
    formats = export.pop("formats", ["sft"])
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list) or not formats or not all(isinstance(f, str) for f in formats):
        raise ConfigError(f"[{where}] formats must be a list of exporter names, got {formats!r}")
    _check_names(EXPORTERS, formats, where, "formats")
    options = export.pop("options", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError(f"[{where}.options] must hold one table per format, e.g. [{where}.options.sft]")
    for name in options:
        if name not in formats:
            raise ConfigError(f"[{where}.options.{name}]: {name!r} is not in formats ({', '.join(formats)})")
    per_format = export.pop("filters", {})
    if not isinstance(per_format, dict) or not all(isinstance(v, dict) for v in per_format.values()):
        raise ConfigError(f"[{where}.filters] must hold one table per format, e.g. [{where}.filters.sft]")
    format_filters = {}
    for name, table in per_format.items():
        if name not in formats:
            raise ConfigError(f"[{where}.filters.{name}]: {name!r} is not in formats ({', '.join(formats)})")
        format_filters[name] = _keys(table)
        _unknown(format_filters[name], FILTER_KEYS, f"{where}.filters.{name}")
    filters = export
    _check_export(formats, filters, options, where, format_filters)

    # train
    where = f"{TABLE}.train"
    train = _keys(_table(top, "train", TABLE))
    trainer = train.pop("trainer", None)
    if not isinstance(trainer, str):
        raise ConfigError(f"[{where}] trainer must name a wilson.trainers driver (e.g. \"lora-sft\")")
    _check_names(TRAINERS, [trainer], where, "trainer")
    if "base" not in train:
        raise ConfigError(f"[{where}] base is required (a Hugging Face id, a model folder or a named base)")
    from wilson_core.plugins import load_driver

    driver = load_driver(TRAINERS, trainer)
    train_data = train.pop("data", None) or getattr(driver, "data_format", "sft")
    if train_data not in formats:
        raise ConfigError(f"[{where}] data: the trainer reads the {train_data!r} export, which is not in "
                          f"[{TABLE}.export] formats ({', '.join(formats)})")
    then = _then(train.pop("then", None), formats, where)
    base = train["base"]
    if isinstance(base, str) and base and not Path(base).is_absolute() and (root / base).exists():
        train["base"] = str((root / base).resolve())  # a local folder beside the pyproject.toml
    _check_train(trainer, train, where)

    # eval
    where = f"{TABLE}.eval"
    evaluation = _keys(_table(top, "eval", TABLE))
    _unknown(evaluation, EVAL_KEYS, where)
    sets_table = evaluation.get("sets", {EXPORT_SET: EXPORT_SET})
    if not isinstance(sets_table, dict) or not sets_table:
        raise ConfigError(f"[{where}] sets must be a table NAME = \"FILE\" (or \"{EXPORT_SET}\" for the export's "
                          "eval split)")
    sets = {}
    for name, value in sets_table.items():
        if name == "all":
            raise ConfigError(f"[{where}.sets]: 'all' names the pooled score; choose another set name")
        sets[name] = EXPORT_SET if value == EXPORT_SET else str(_path(root, value, f"{where}.sets", name))
    if EXPORT_SET in sets.values():
        if "sft" not in formats:
            raise ConfigError(f"[{where}.sets]: \"{EXPORT_SET}\" needs 'sft' in [{TABLE}.export] formats")
        if not {**filters, **format_filters.get("sft", {})}.get("eval_split"):
            raise ConfigError(f"[{where}.sets]: \"{EXPORT_SET}\" needs eval-split in [{TABLE}.export]")
    evaluators = evaluation.get("evaluators", {"exact-match": {}})
    if not isinstance(evaluators, dict) or not evaluators or not all(isinstance(v, dict) for v in evaluators.values()):
        raise ConfigError(f"[{where}.evaluators] must hold one table per evaluator, e.g. [{where}.evaluators.exact-match]")
    evaluators = {name: _keys(options) for name, options in evaluators.items()}
    _check_evaluators(evaluators, where)
    provider = evaluation.get("provider", "transformers")
    max_tokens = evaluation.get("max_tokens", 64)
    limit = evaluation.get("limit")
    judge = evaluation.get("judge")
    ab_review = evaluation.get("ab_review", 0)
    for key, value, kind in (("provider", provider, str), ("max_tokens", max_tokens, int), ("ab_review", ab_review, int),
                             ("limit", limit, (int, type(None))), ("judge", judge, (str, type(None)))):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"[{where}] {key.replace('_', '-')}: wrong type {type(value).__name__} ({value!r})")
    compare = _check_compare(evaluation.get("compare"), sets, evaluators, ab_review, judge, where)

    # gate
    where = f"{TABLE}.gate"
    gate_table = _keys(_table(top, "gate", TABLE))
    _unknown(gate_table, GATE_KEYS, where)
    metric = gate_table.get("metric", next(iter(evaluators)))
    if metric not in evaluators:
        raise ConfigError(f"[{where}] metric {metric!r} is not one of the evaluators configured in "
                          f"[{TABLE}.eval.evaluators] ({', '.join(evaluators)})")
    gate_set = gate_table.get("set", "all")
    known_sets = ["all", *sets]
    if compare is not None:  # free decoding too, when the held-out lines carry the app's constraint
        known_sets += [name + FREE for name in known_sets]
    if gate_set not in known_sets:
        raise ConfigError(f"[{where}] set {gate_set!r} is not an eval set ({', '.join(known_sets)})")
    numbers = {}
    for key, default in (("margin", 0.0), ("tolerance", 0.05)):
        value = gate_table.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"[{where}] {key} must be a number >= 0, got {value!r}")
        numbers[key] = float(value)
    min_count = gate_table.get("min_count", 1)
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        raise ConfigError(f"[{where}] min-count must be a whole number >= 1, got {min_count!r}")
    gate = GateRule(metric=metric, set=gate_set, min_count=min_count, **numbers)

    # deploy
    where = f"{TABLE}.deploy"
    deploy = _table(top, "deploy", TABLE)
    _check_names(DEPLOYERS, list(deploy), where, "deployer")
    deployers = {}
    for name, value in deploy.items():
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}.{name}] must be a table of that deployer's settings")
        settings = _keys(value)
        _unknown(settings, DEPLOY_KEYS, f"{where}.{name}")
        deployers[name] = settings
    return PipelineConfig(
        root=root, runs=runs, db=db_path, formats=tuple(formats), export_filters=filters,
        exporter_options={k: dict(v) for k, v in options.items()}, trainer=trainer, train_data=train_data,
        train_settings=train, sets=sets, evaluators=evaluators, provider=provider, max_tokens=max_tokens,
        limit=limit, judge=judge, gate=gate, ab_review=ab_review, deployers=deployers, compare=compare,
        format_filters=format_filters, then=then,
    )


def _check_compare(value: Any, sets: dict[str, str], evaluators: dict[str, dict[str, Any]], ab_review: int,
                   judge: str | None, where: str) -> dict[str, Any] | None:
    """``compare = { batch-size = 48, samples = 3, log-likelihood = false }``: score with
    ``wilson eval``'s batched comparison (wilson-train) instead of generating through ``provider``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] compare must be a table, e.g. compare = {{ batch-size = 16 }}")
    options = _keys(value)
    _unknown(options, COMPARE_KEYS, f"{where}.compare")
    for key, kind, low in (("batch_size", int, 1), ("samples", int, 0), ("log_likelihood", bool, None)):
        if key in options:
            found = options[key]
            if not isinstance(found, kind) or (kind is int and (isinstance(found, bool) or found < low)):
                wanted = "true or false" if kind is bool else f"a whole number >= {low}"
                raise ConfigError(f"[{where}.compare] {key.replace('_', '-')} must be {wanted}, got {found!r}")
    import importlib.util

    if importlib.util.find_spec("wilson_train") is None:
        raise ConfigError(f"[{where}] compare runs 'wilson eval', from the wilson-train plugin: "
                          "pip install wilson-train")
    for name in evaluators:
        if name not in COMPARE_METRICS:
            raise ConfigError(f"[{where}.evaluators.{name}]: compare scores only {', '.join(COMPARE_METRICS)}; "
                              f"remove compare to score {name!r} through the provider")
    for name, source in sets.items():
        if source == EXPORT_SET:
            raise ConfigError(f"[{where}.sets] {name}: compare takes held-out files, not \"{EXPORT_SET}\"")
        if "/" in name or "=" in name:
            raise ConfigError(f"[{where}.sets] {name!r}: with compare, a set name has no '/' or '='")
    if ab_review or judge:
        raise ConfigError(f"[{where}] compare keeps no answers for {'ab-review' if ab_review else 'judge'}: "
                          "remove one of them")
    return options


def export_options(config: PipelineConfig, fmt: str) -> Any:
    """The :class:`~wilson_core.exporting.ExportOptions` of one export format."""
    from wilson_core.exporting import ExportOptions

    aliases = {"call_type": "call_types", "model": "models", "provider": "providers", "tag": "tags"}
    merged = {**config.export_filters, **config.format_filters.get(fmt, {})}
    values = {aliases.get(k, k): v for k, v in merged.items()}
    return ExportOptions(format=fmt, exporter_options=config.exporter_options.get(fmt, {}), **values)


def _check_export(formats: list[str], filters: dict[str, Any], options: dict[str, Any], where: str,
                  format_filters: dict[str, dict[str, Any]]) -> None:
    from wilson_core.exporting import ExportOptions
    from wilson_core.exporting.pipeline import load_exporter

    aliases = {"call_type": "call_types", "model": "models", "provider": "providers", "tag": "tags"}
    for fmt in formats:
        merged = {**filters, **format_filters.get(fmt, {})}
        values = {aliases.get(k, k): v for k, v in merged.items()}
        try:
            load_exporter(ExportOptions(format=fmt, exporter_options=options.get(fmt, {}), **values))
        except TypeError as exc:
            raise ConfigError(f"[{where}]: {exc}") from None
        except WilsonError as exc:
            raise ConfigError(f"[{where}] ({fmt}): {exc}") from None


def _then(value: Any, formats: list[str], where: str) -> dict[str, Any] | None:
    """``[train.then]``: its trainer, the export format it reads, its settings (checked)."""
    from wilson_core.interfaces import TRAINERS
    from wilson_core.plugins import load_driver

    if value is None:
        return None
    where = f"{where}.then"
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] must be a table (a second training on the first one's merged model)")
    settings = _keys(value)
    trainer = settings.pop("trainer", None)
    if not isinstance(trainer, str):
        raise ConfigError(f"[{where}] trainer must name a wilson.trainers driver (e.g. \"lora-dpo\")")
    _check_names(TRAINERS, [trainer], where, "trainer")
    data = settings.pop("data", None) or getattr(load_driver(TRAINERS, trainer), "data_format", "sft")
    if data not in formats:
        raise ConfigError(f"[{where}] data: this trainer reads the {data!r} export, which is not in "
                          f"[{TABLE}.export] formats ({', '.join(formats)})")
    if "base" in settings:
        raise ConfigError(f"[{where}] base: the second training starts from the first one's merged model")
    _check_train(trainer, {**settings, "base": "-"}, where)
    return {"trainer": trainer, "data": data, "settings": settings}


def _check_train(trainer: str, settings: dict[str, Any], where: str) -> None:
    """Types of the training settings (cattrs names the field); unknown keys are refused
    unless they are the trainer's own options (given under ``options``)."""
    from wilson_core.training import SETTABLE, build_config

    known = set(SETTABLE) - {"data", "eval_data", "out", "resume", "force"}
    unknown = sorted(set(settings) - known - {"options"})
    if unknown:
        raise ConfigError(f"[{where}]: unknown key {unknown[0]!r} (known: {', '.join(sorted(known | {'options'}))}; "
                          f"trainer-specific settings go under [{where}.options])")
    if "options" in settings and not isinstance(settings["options"], dict):
        raise ConfigError(f"[{where}.options] must be a table")
    try:
        build_config(trainer, settings, {"data": "-", "out": "-"})
    except WilsonError as exc:
        raise ConfigError(f"[{where}]: {exc}") from None


def _check_evaluators(evaluators: dict[str, dict[str, Any]], where: str) -> None:
    from wilson_core.interfaces import EVALUATORS, EvaluatorError
    from wilson_core.plugins import load_driver

    _check_names(EVALUATORS, list(evaluators), f"{where}.evaluators", "evaluator")
    for name, options in evaluators.items():
        cls = load_driver(EVALUATORS, name)
        problems = cls.check_options(_keys(options))
        if problems:
            raise ConfigError(f"[{where}.evaluators.{name}]: {problems[0]}")
        try:
            cls(**_keys(options))
        except EvaluatorError as exc:
            raise ConfigError(f"[{where}.evaluators.{name}]: {exc}") from None
