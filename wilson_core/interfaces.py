"""Interfaces of the named drivers (stevedore namespaces).

A driver is a class named by an entry point in one of these namespaces::

    [project.entry-points."wilson.exporters"]
    my-format = "my_package.exporter:MyExporter"

``wilson plugins`` lists drivers without importing them; only the driver the
user asks for by name is imported.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .records import ProviderResponse

PROVIDERS = "wilson.providers"
EXPORTERS = "wilson.exporters"
TRAINERS = "wilson.trainers"
DEPLOYERS = "wilson.deployers"

NAMESPACES = {
    PROVIDERS: "LLM back ends for the facade (provider='NAME:MODEL')",
    EXPORTERS: "training-data formats (wilson export NAME)",
    TRAINERS: "fine-tuning methods (wilson train NAME)",
    DEPLOYERS: "deployment targets (wilson deploy NAME)",
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
        return await asyncio.to_thread(self.chat, messages, tools, params)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or models (optional)."""


class Exporter(ABC):
    """A training-data format.

    The export command selects the interactions and labels (filters, labels,
    splits, dedup, redaction, manifest, atomic writing); the exporter only turns
    examples into JSON objects, one per output line.
    """

    #: one line shown by ``wilson plugins`` and ``wilson export --help``.
    description: ClassVar[str] = ""
    #: which examples the exporter wants: ``"answers"`` (one per interaction or
    #: run, with its final answer and rating), ``"pairs"`` (chosen/rejected
    #: answers to one context) or ``"ratings"`` (rated answers, labelled).
    needs: ClassVar[str] = "answers"

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def records(self, examples: Iterable[Any]) -> Iterator[dict[str, Any]]:
        """Turn examples into JSON-ready dicts, one per output line, streaming."""


class Trainer(ABC):
    """A fine-tuning method (``wilson train NAME``)."""

    description: ClassVar[str] = ""
    #: the export format this trainer reads (``sft``, ``dpo``, ``kto``).
    data_format: ClassVar[str] = "sft"

    @abstractmethod
    def train(self, config: Any) -> Any:
        """Train with ``config`` (a :class:`wilson_core.training.TrainConfig`-like record)."""


class Deployer(ABC):
    """A deployment target (``wilson deploy NAME``)."""

    description: ClassVar[str] = ""

    @abstractmethod
    def deploy(self, config: Any) -> Any:
        """Deploy with ``config`` and return a report (paths, provider string, checks)."""
