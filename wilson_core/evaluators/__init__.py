"""Evaluators: named metrics (``wilson.evaluators``) for ``wilson eval`` and the promotion gate.

Built-ins (declared as entry points in wilson-core's ``pyproject.toml``, exactly as a
third-party package declares its own):

- ``exact-match``: the answer's text and tool calls equal the reference's;
- ``token-f1``: F1 over word tokens of answer and reference;
- ``json-schema``: the answer's text is JSON valid against a schema;
- ``tool-call``: right tools with the right arguments (cases whose reference calls tools);
- ``judge-win-rate``: an LLM judge's pairwise wins against a reference answer (the
  captured upstream answer, or the baseline model's);
- ``ab-win-rate``: people's blind A/B picks in the dashboard (wins, ties count half).

:mod:`.running` loads eval sets, generates answers with any provider and scores them.
"""

from __future__ import annotations
