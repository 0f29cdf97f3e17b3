"""Wilson's built-in export formats (stevedore namespace ``wilson.exporters``).

- ``sft``: TRL conversational language modelling, ``{"messages": [...], "tools": [...]}``
- ``dpo``: TRL conversational preference, ``{"prompt", "chosen", "rejected", "tools"}``
- ``kto``: TRL conversational unpaired preference, ``{"prompt", "completion", "label", "tools"}``
- ``openai-chat``: OpenAI fine-tuning chat JSONL (tool arguments as JSON strings)

Each module is imported only when its format is asked for.
"""

from importlib.metadata import version as _version

__version__ = _version("wilson-exporters")  # one source: the distribution's metadata (pyproject.toml)
