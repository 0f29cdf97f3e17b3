"""Interfaces of the named drivers (stevedore namespaces).

A driver is a class named by an entry point in one of these namespaces::

    [project.entry-points."wilson.exporters"]
    my-format = "my_package.exporter:MyExporter"

``wilson plugins`` lists drivers without importing them; only the driver the
user asks for by name is imported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import field, frozen

from .errors import WilsonError

if TYPE_CHECKING:
    from .records import ProviderResponse
    from .streams import StreamEvent

PROVIDERS = "wilson.providers"
EXPORTERS = "wilson.exporters"
TRAINERS = "wilson.trainers"
DEPLOYERS = "wilson.deployers"
EVALUATORS = "wilson.evaluators"

NAMESPACES = {
    PROVIDERS: "LLM back ends for the facade (provider='NAME:MODEL')",
    EXPORTERS: "training-data formats (wilson export NAME)",
    TRAINERS: "fine-tuning methods (wilson train NAME)",
    DEPLOYERS: "deployment targets (wilson deploy NAME)",
    EVALUATORS: "metrics for wilson eval and the promotion gate (wilson pipeline run)",
}


class Provider(ABC):
    """An LLM back end the facade calls.

    ``LLM(provider="NAME:MODEL", **options)`` builds ``Driver(MODEL, **options)``.
    """

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model
        self.options = options

    @abstractmethod
    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> ProviderResponse:
        """Send one chat request and return the model's answer.

        :param messages: the conversation in chat-template shape (tool call
            arguments as dicts).
        :param tools: full JSON schemas of the tools offered, or ``None``.
        :param params: request parameters (temperature, max_tokens, ...).
        :raises Exception: any failure; the facade records it as a
            ``status="error"`` interaction and re-raises it to the app.
        """

    async def achat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> ProviderResponse:
        """Async variant; the default runs :meth:`chat` in a worker thread."""
        import asyncio  # here, not at the top: the CLI starts without asyncio

        return await asyncio.to_thread(self.chat, messages, tools, params)

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> Iterator[StreamEvent]:
        """Send one chat request and yield the answer as it comes.

        Yields :class:`~wilson_core.streams.TextDelta` and
        :class:`~wilson_core.streams.ToolCallDelta` in the order the model
        produced them, and :class:`~wilson_core.streams.StreamInfo` (usage,
        model) where the protocol sends it.  Must be a generator (or close its
        connection in ``close()``): the facade closes it when the app stops
        reading.  Raise :class:`~wilson_core.streams.StreamCut` when the stream
        stops before its end (the call is recorded as ``incomplete``).

        The default yields the whole answer of :meth:`chat` as one chunk.
        """
        from .streams import response_events

        yield from response_events(self.chat(messages, tools, params))

    async def astream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> AsyncIterator[StreamEvent]:
        """Async variant of :meth:`stream` (an async generator).

        The default: a driver that overrides :meth:`stream` has it read in a
        worker thread, one event at a time (closed in that thread when the app
        stops); otherwise the whole answer of :meth:`achat` as one chunk.
        """
        from .streams import response_events, thread_stream

        if type(self).stream is Provider.stream:
            for event in response_events(await self.achat(messages, tools, params)):
                yield event
            return
        async for event in thread_stream(self.stream(messages, tools, params)):
            yield event

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or models (optional)."""


class Exporter(ABC):
    """A training-data format (``wilson export NAME``).

    The export pipeline (:mod:`wilson_core.exporting`) selects interactions
    and their current labels, applies filters, the train/eval split, dedup,
    the length limit and redaction, and writes the files and manifest
    atomically; the exporter only turns each
    :class:`~wilson_core.exporting.Example` into one JSON object (one line).

    ``Exporter(**options)`` is built once per export with
    ``ExportOptions.exporter_options``.
    """

    #: one line shown by ``wilson plugins`` and ``wilson export --help``.
    description: ClassVar[str] = ""
    #: which examples the exporter wants: ``"answers"`` (one per interaction or
    #: run: ``prompt`` + the final answer as ``completion``), ``"pairs"``
    #: (``completion`` chosen over ``rejected`` for one ``prompt``) or
    #: ``"ratings"`` (one answer with a boolean ``label``).
    needs: ClassVar[str] = "answers"
    #: ``True`` when :meth:`record` never returns ``None``: ``count_records`` may then count
    #: the lines without building them (leave ``False`` when the exporter filters examples).
    keeps_every_example: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def record(self, example: Any) -> dict[str, Any] | None:
        """One output line (a JSON-ready dict) for ``example``, or ``None`` to leave it out."""

    def records(self, examples: Iterable[Any]) -> Iterator[dict[str, Any]]:
        """Lines for many examples, streaming (skips the ``None`` ones)."""
        for example in examples:
            record = self.record(example)
            if record is not None:
                yield record

    def check(self, record: Mapping[str, Any]) -> list[str]:
        """Schema problems of one line read back from a file (empty when it is fine).

        Used by ``wilson export validate``; the default accepts any object.
        """
        return [] if isinstance(record, Mapping) else ["a line must be a JSON object"]

    def conversations(
        self, record: Mapping[str, Any]
    ) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]]:
        """The ``(messages, tools)`` conversations a trainer renders for one line.

        ``wilson export validate`` renders each through the tokenizer's chat
        template; the default (no conversations) skips rendering.
        """
        return []


class TrainError(WilsonError):
    """A training run that cannot start as asked (bad data, missing base model, ...)."""


#: the keys each training-data format needs on every JSONL line (TRL's documented shapes).
TRAIN_FORMATS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}


@frozen
class TrainConfig:
    """What ``wilson train NAME`` was asked to do (CLI flags over ``[tool.wilson.train]``).

    :param trainer: the driver name (``lora-sft``, ``lora-dpo``, ``lora-kto``, ...).
    :param data: training JSONL (an export file); ``eval_data`` the held-out split.
    :param base: a Hugging Face model id, a local model folder, or a named base
        (``smollm2-135m``).
    :param out: the run folder: ``adapter/``, ``merged/``, ``checkpoints/``,
        ``metrics.json``, ``README.md``, ``train_config.json``.
    :param resume: continue from the last checkpoint in ``out/checkpoints``.
    :param force: replace an existing ``out``.
    :param max_steps: stop after this many optimiser steps (``None``: ``epochs``).
    :param target_modules: LoRA target modules (``None``: chosen per architecture).
    :param options: trainer-specific settings (e.g. ``beta`` for DPO/KTO).
    """

    trainer: str
    data: str
    base: str
    out: str
    eval_data: str | None = None
    resume: bool = False
    force: bool = False
    epochs: float = 3.0
    max_steps: int | None = None
    lr: float = 2e-4
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    logging_steps: int = 10
    save_steps: int = 50
    eval_steps: int | None = None
    seed: int = 0
    packing: bool = False
    padding_free: bool = False
    qlora: bool = False
    assistant_only_loss: bool = True
    merge: bool = True
    options: dict[str, Any] = field(factory=dict)


@frozen
class TrainReport:
    """What a training run produced: folders, metrics and whether it was interrupted."""

    out: str
    adapter: str
    merged: str | None
    metrics: dict[str, Any] = field(factory=dict)
    interrupted: bool = False


class Trainer(ABC):
    """A fine-tuning method (``wilson train NAME``).

    The command calls :meth:`check` (cheap: no torch import) and then
    :meth:`train`.  Drivers import heavy libraries inside :meth:`train` only.
    """

    description: ClassVar[str] = ""
    #: the export format this trainer reads (a key of :data:`TRAIN_FORMATS`).
    data_format: ClassVar[str] = "sft"

    def check(self, config: TrainConfig) -> None:  # noqa: B027 - optional hook
        """Refuse a run that cannot work (raise :class:`TrainError`), before any heavy import."""

    @abstractmethod
    def train(self, config: TrainConfig) -> TrainReport:
        """Train with ``config``; write the run folder; return what was written."""


class DeployError(WilsonError):
    """A deployment that cannot be done as asked (bad input, unsupported model, ...)."""


class VerificationFailed(DeployError):
    """``--verify`` ran and at least one check failed (the artefacts are kept for inspection)."""

    exit_code = 3


@frozen
class DeployConfig:
    """What ``wilson deploy NAME`` was asked to do.

    :param model: a Hugging Face model folder: the merged model, or the base model
        when ``adapter`` is given.
    :param out: the output folder (must be empty or absent unless ``force``).
    :param adapter: a PEFT LoRA adapter folder trained on ``model``.
    :param quant: the target's quantisation/precision name (``f32``, ``f16``, ``q8_0``,
        ``int8``, ...); ``None`` means the deployer's default.
    :param verify: load the artefact in its real runtime and compare with PyTorch.
    :param host: the server to deploy to, for targets that have one (Ollama).
    :param force: allow writing into a non-empty ``out`` (its files may be replaced).
    :param name: the deployed model's name where the target names models (Ollama).
    :param options: deployer-specific ``--option KEY=VALUE`` settings.
    """

    model: str
    out: str
    adapter: str | None = None
    quant: str | None = None
    verify: bool = False
    host: str | None = None
    force: bool = False
    name: str | None = None
    options: dict[str, Any] = field(factory=dict)


@frozen
class DeployCheck:
    """One verification check: what was compared, whether it passed, the figures."""

    name: str
    passed: bool
    detail: str = ""
    metrics: dict[str, float] = field(factory=dict)


@frozen
class DeployReport:
    """What a deployer did: files written, provider string for the facade, checks run."""

    target: str
    out: str
    files: tuple[str, ...] = field(default=(), converter=tuple)
    #: ``LLM(provider=...)`` string that runs the deployed model, if a provider exists.
    provider: str | None = None
    checks: tuple[DeployCheck, ...] = field(default=(), converter=tuple)
    #: lines for the user (e.g. the exact ``ollama create`` command to run).
    notes: tuple[str, ...] = field(default=(), converter=tuple)
    seconds: float = 0.0
    details: dict[str, Any] = field(factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


class Deployer(ABC):
    """A deployment target (``wilson deploy NAME``).

    ``deploy`` writes the artefacts under ``config.out``, runs the checks when
    ``config.verify`` is set and returns a :class:`DeployReport` (it does not
    raise for failed checks: the caller decides; the CLI exits non-zero).
    Bad input raises :class:`DeployError` with a message for people.
    """

    description: ClassVar[str] = ""
    #: the ``--quant`` values accepted; the first one is the default.
    quant_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def deploy(self, config: DeployConfig) -> DeployReport:
        """Deploy with ``config`` and return a report (paths, provider string, checks)."""

    def resolve_quant(self, config: DeployConfig) -> str | None:
        """``config.quant`` lower-cased and checked against :attr:`quant_types`."""
        if config.quant is None:
            return self.quant_types[0] if self.quant_types else None
        quant = config.quant.lower()
        if self.quant_types and quant not in self.quant_types:
            raise DeployError(
                f"unsupported --quant {config.quant!r} for {type(self).__name__}; "
                f"choose one of: {', '.join(self.quant_types)}"
            )
        return quant

    @staticmethod
    def prepare_out(config: DeployConfig) -> Path:
        """Create ``config.out``; refuse a non-empty folder unless ``config.force``."""
        out = Path(config.out)
        if out.exists() and not out.is_dir():
            raise DeployError(f"output path {out} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not config.force:
            raise DeployError(
                f"output folder {out} is not empty; choose another --out or pass --force "
                "to overwrite its files"
            )
        out.mkdir(parents=True, exist_ok=True)
        return out


class EvaluatorError(WilsonError):
    """An evaluator that cannot run as configured (bad option, missing schema, ...)."""


@frozen
class EvalCase:
    """One held-out example: the conversation before the answer, and the reference answer.

    :param id: stable identity (the interaction id, or ``FILE:LINE`` for a file).
    :param messages: the conversation up to (not including) the answer.
    :param tools: the JSON schemas of the tools offered, or ``None``.
    :param reference: the expected assistant message (``content`` and/or ``tool_calls``).
    :param subset: the eval set the case belongs to.
    """

    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    reference: dict[str, Any]
    subset: str = ""


@frozen
class EvalScore:
    """An evaluator's result on one eval set: the mean, how many cases, a 95% interval."""

    value: float | None
    count: int
    low: float | None = None
    high: float | None = None
    details: dict[str, Any] = field(factory=dict)


@frozen
class EvalContext:
    """What an evaluator may need besides the answers.

    :param baseline: the answers of the system the candidate is compared with (the live
        model, or the base the first time), in case order; ``None`` when not generated.
    :param db: the Wilson database (evaluators that read stored labels, such as A/B picks).
    :param model: the registry id of the candidate; ``baseline_model`` that of the baseline.
    :param judge: a provider string (``NAME:MODEL``) for evaluators that ask a model.
    """

    baseline: list[dict[str, Any]] | None = None
    db: str | None = None
    model: str | None = None
    baseline_model: str | None = None
    judge: str | None = None


class Evaluator(ABC):
    """A metric (``wilson eval --evaluator NAME``, ``[tool.wilson.pipeline.eval.evaluators.NAME]``).

    ``Evaluator(**options)`` is built once per evaluation; options are checked against
    :attr:`option_types` (unknown keys and wrong types are refused with the key named).
    :meth:`score` gives one case's score in ``[0, 1]`` (or ``None`` when the metric does not
    apply to that case); :meth:`evaluate` (the default averages :meth:`score`) gives an
    :class:`EvalScore` for a whole set.  Answers are assistant messages in chat-template
    shape: ``{"role": "assistant", "content": ..., "tool_calls": [...]}``.
    """

    description: ClassVar[str] = ""
    #: the options accepted and their types (``float`` also takes an ``int``).
    option_types: ClassVar[Mapping[str, Any]] = {}
    #: options that must be given.
    required_options: ClassVar[tuple[str, ...]] = ()
    #: ``False`` for a metric where lower is better (the gate compares accordingly).
    higher_is_better: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        problems = self.check_options(options)
        if problems:
            raise EvaluatorError("; ".join(problems))
        self.options = options

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``options`` (empty when nothing): unknown keys, wrong types."""
        problems = []
        for key, value in options.items():
            if key not in cls.option_types:
                known = ", ".join(sorted(cls.option_types)) or "none"
                problems.append(f"unknown option {key!r} (known: {known})")
                continue
            expected = cls.option_types[key]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if not isinstance(value, expected) or (isinstance(value, bool) and expected in (int, float)):
                names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
                problems.append(f"option {key!r} must be {names}, got {type(value).__name__} {value!r}")
        problems += [f"option {key!r} is required" for key in cls.required_options if key not in options]
        return problems

    @abstractmethod
    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        """The score of one answer in ``[0, 1]``, or ``None`` when the metric does not apply."""

    def evaluate(self, cases: list[EvalCase], answers: list[dict[str, Any]], context: EvalContext) -> EvalScore:
        """The score of a whole set: the mean of :meth:`score` over the cases it applies to."""
        from wilson_core.evaluators.stats import mean_interval

        scores = []
        for case, answer in zip(cases, answers, strict=True):
            value = self.score(case, answer, context)
            if value is not None:
                scores.append(float(value))
        return mean_interval(scores)
