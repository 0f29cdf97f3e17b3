"""The built-in evaluators that compare an answer with its reference (no model, no store)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from wilson_core.interfaces import EvalCase, EvalContext, Evaluator, EvaluatorError

from .answers import normal, parts, token_f1


class ExactMatch(Evaluator):
    """Text equal to the reference's (case and whitespace normalised) and the same tool calls."""

    description: ClassVar[str] = "answer text and tool calls equal the reference's (normalised)"
    option_types: ClassVar[dict[str, Any]] = {"case_sensitive": bool, "tools": bool}

    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        got, want = parts(answer), parts(case.reference)
        same = (got.content == want.content if self.options.get("case_sensitive")
                else normal(got.content) == normal(want.content))
        if self.options.get("tools", True):
            same = same and sorted(got.calls) == sorted(want.calls)
        return float(same)


class TokenF1(Evaluator):
    """F1 over word and punctuation tokens of answer and reference (tool calls as JSON)."""

    description: ClassVar[str] = "F1 over the word tokens of answer and reference"

    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        return token_f1(parts(answer).text, parts(case.reference).text)


class JsonSchema(Evaluator):
    """The answer's text is JSON that validates against ``schema`` (a table, or ``schema_file``).

    Without a schema, any JSON value passes.  ``only_json_references = true`` scores only
    cases whose reference is itself JSON (mixed eval sets).
    """

    description: ClassVar[str] = "answer text is JSON valid against a JSON schema"
    option_types: ClassVar[dict[str, Any]] = {"schema": dict, "schema_file": str, "only_json_references": bool}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        schema = options.get("schema")
        if options.get("schema_file"):
            from pathlib import Path

            path = Path(options["schema_file"])
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise EvaluatorError(f"option 'schema_file': cannot read a JSON schema from {path}: {exc}") from None
        self.validator = None
        if schema is not None:
            try:
                import jsonschema
            except ImportError:
                raise EvaluatorError("json-schema needs the jsonschema package: pip install 'wilson-core[eval]'") from None
            try:
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise EvaluatorError(f"option 'schema' is not a valid JSON schema: {exc.message}") from None
            self.validator = cls(schema)

    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        if self.options.get("only_json_references") and _json(parts(case.reference).content) is _INVALID:
            return None
        value = _json(parts(answer).content)
        if value is _INVALID:
            return 0.0
        if self.validator is None:
            return 1.0
        return 0.0 if any(True for _ in self.validator.iter_errors(value)) else 1.0


_INVALID = object()


def _json(text: str) -> Any:
    body = text.strip()
    if body.startswith("```"):  # a fenced block: its inside
        body = body.strip("`")
        body = body.split("\n", 1)[1] if "\n" in body else body
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _INVALID


class ToolCallAccuracy(Evaluator):
    """Right tools with the right arguments, over cases whose reference calls tools.

    ``match = "arguments"`` (default) needs names and arguments equal; ``"names"`` only
    the names.  A case whose reference calls no tool scores ``None`` (not counted) unless
    ``score_no_call_cases`` is set: then calling no tool is right there.
    """

    description: ClassVar[str] = "right tools called with the right arguments"
    option_types: ClassVar[dict[str, Any]] = {"match": str, "score_no_call_cases": bool}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if options.get("match", "arguments") not in ("arguments", "names"):
            raise EvaluatorError(f"option 'match' must be 'arguments' or 'names', got {options['match']!r}")

    def score(self, case: EvalCase, answer: dict[str, Any], context: EvalContext) -> float | None:
        got, want = parts(answer), parts(case.reference)
        if not want.calls:
            return float(not got.calls) if self.options.get("score_no_call_cases") else None
        if self.options.get("match", "arguments") == "names":
            return float(sorted(n for n, _ in got.calls) == sorted(n for n, _ in want.calls))
        return float(sorted(got.calls) == sorted(want.calls))
