"""Model cards with Hugging Face YAML front matter, for training runs and deployments.

A card is a ``README.md`` that starts with a ``---`` block of metadata the Hub
reads (``base_model``, ``library_name``, ``tags``, ``datasets``, ...) followed
by Markdown.  The YAML is written here without a YAML library: only strings,
numbers, booleans, lists and mappings of them, every string quoted as JSON
(a JSON string is a valid YAML scalar).

``datasets`` names each export the model was trained on by its manifest:
``wilson-export:FILE@sha256:HASH`` (the name and hash of the training file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
#: Plain words a YAML 1.1 reader (PyYAML, and so ``huggingface_hub``) takes for a boolean or
#: null rather than a string: a key spelt like one of them is quoted.
_YAML_WORDS = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null"})


def _quote(text: str) -> str:
    """A YAML double-quoted string: printable ASCII as is, everything else escaped (\\uXXXX, \\UXXXXXXXX)."""
    out = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and value == value and value not in (float("inf"), float("-inf")):
        return json.dumps(value)
    return _quote(str(value))


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS else _quote(key)


def _yaml_lines(data: Mapping[str, Any], indent: int = 0) -> list[str]:
    pad = " " * indent
    lines = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            if not value:
                lines.append(f"{pad}{_key(key)}: {{}}")
                continue
            lines.append(f"{pad}{_key(key)}:")
            lines.extend(_yaml_lines(value, indent + 2))
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            if not value:
                lines.append(f"{pad}{_key(key)}: []")
                continue
            lines.append(f"{pad}{_key(key)}:")
            for item in value:
                if isinstance(item, Mapping):
                    inner = _yaml_lines(item, indent + 4)
                    lines.append(f"{pad}  - {inner[0].lstrip()}")
                    lines.extend(inner[1:])
                else:
                    lines.append(f"{pad}  - {_scalar(item)}")
        else:
            lines.append(f"{pad}{_key(key)}: {_scalar(value)}")
    return lines


def front_matter(meta: Mapping[str, Any]) -> str:
    """``---`` + YAML of ``meta`` + ``---`` (``None`` values and empty lists left out)."""
    kept = {k: v for k, v in meta.items() if v is not None and v != [] and v != ()}
    return "---\n" + "\n".join(_yaml_lines(kept)) + "\n---\n"


def split_front_matter(text: str) -> tuple[str, str]:
    """``(yaml, body)`` of a card (``yaml`` empty when there is no front matter)."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return text[4:end + 1], text[end + 5:]
    return "", text


def dataset_ids(data_files: Sequence[str | Path | None]) -> list[str]:
    """``wilson-export:NAME@sha256:HASH`` for each data file's export manifest (where one exists)."""
    from wilson_core.training import manifest_for

    ids = []
    for data in data_files:
        if not data:
            continue
        manifest_path = manifest_for(data)
        if manifest_path is None:
            continue
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        files = manifest.get("files") or {}
        name = Path(str(data)).name
        entry = next((f for f in files.values() if isinstance(f, dict) and Path(str(f.get("path", ""))).name == name),
                     files.get("train") if isinstance(files.get("train"), dict) else None)
        digest = (entry or {}).get("sha256")
        ids.append(f"wilson-export:{name}@sha256:{digest}" if digest else f"wilson-export:{name}")
    return ids


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |\n" for row in rows)
    return head + body


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def eval_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{set, metric, base, tuned, delta}`` of a ``wilson eval`` report (``models`` per ``subsets``)."""
    groups = [(name, sub["models"]) for name, sub in (report.get("subsets") or {}).items()
              if isinstance(sub, Mapping) and "models" in sub]
    if len(groups) != 1:
        groups.append(("all", report.get("models") or {}))
    rows = []
    for set_name, models in groups:
        base, tuned = models.get("base") or {}, models.get("tuned") or {}
        for metric, value in tuned.items():
            other = base.get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and metric != "examples":
                delta = value - other if isinstance(other, (int, float)) else None
                rows.append({"set": set_name, "metric": metric, "base": other, "tuned": value, "delta": delta})
    return rows


EVAL_HEADING = "## Evaluation"


def with_eval_section(card: str, report: Mapping[str, Any], *, data: Sequence[str] = ()) -> str:
    """``card`` with its evaluation section (``wilson eval``: base against tuned) put in or replaced."""
    rows = eval_rows(report)
    section = (f"{EVAL_HEADING}\n\n`wilson eval` on held-out data"
               + (" (" + ", ".join(f"`{d}`" for d in data) + ")" if data else "") + ", base against tuned:\n\n"
               + table(rows, ["set", "metric", "base", "tuned", "delta"]))
    start = card.find(EVAL_HEADING)
    if start == -1:
        return card.rstrip("\n") + "\n\n" + section
    following = card.find("\n## ", start + len(EVAL_HEADING))
    rest = card[following + 1:] if following != -1 else ""
    return card[:start] + section + ("\n" + rest if rest else "")


def update_eval_section(folder: str | Path, report: Mapping[str, Any], *, data: Sequence[str] = ()) -> Path | None:
    """Add the eval table to the training card of ``folder`` (a run folder or its merged/adapter)."""
    folder = Path(folder)
    for candidate in (folder / "README.md", folder.parent / "README.md"):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8")
            if text.startswith("---\n") and "library_name" in text:
                candidate.write_text(with_eval_section(text, report, data=data), encoding="utf-8")
                return candidate
    return None


def training_meta(*, base_model: str, trainer: str, data_files: Sequence[str | None],
                  settings: Mapping[str, Any]) -> dict[str, Any]:
    """The front matter of a training run's card."""
    method = trainer.split("-")[-1]  # lora-sft -> sft
    return {
        "base_model": base_model,
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": ["wilson", "lora", "peft", "trl", method, f"wilson-{trainer}"],
        "datasets": dataset_ids(list(data_files)),
        "wilson": {"trainer": trainer, **{k: v for k, v in settings.items()
                                          if isinstance(v, (str, int, float, bool)) or v is None}},
    }


def deployment_card(report: Any, *, model: str, adapter: str | None = None, quant: str | None = None) -> str:
    """The card of a deployment folder, from the deployer's :class:`~wilson_core.interfaces.DeployReport`."""
    base_model = _base_model_of(Path(model))
    library = {"gguf": "gguf", "ollama": "gguf", "transformersjs": "transformers.js"}.get(report.target)
    tags = ["wilson", report.target]
    if library and library not in tags:
        tags.append(library)
    meta = {
        "base_model": base_model,
        "library_name": library,
        "tags": tags,
        "datasets": _datasets_of(Path(model)),
        "pipeline_tag": "text-generation",
    }
    checks = [{"check": c.name, "passed": "yes" if c.passed else "NO", "detail": c.detail}
              for c in report.checks]
    files = "\n".join(f"- `{Path(f).name}`" for f in report.files) or "- (none listed)"
    use = f"`wilson_core.LLM(provider=\"{report.provider}\")`" if report.provider else "see the notes below"
    notes = "\n".join(f"- {n}" for n in report.notes)
    verified = "not run (deploy with `--verify`)" if not checks else (
        "passed" if report.passed else "**failed**")
    return (
        front_matter(meta)
        + f"\n# {report.target} deployment made with `wilson deploy {report.target}`\n\n"
        + f"- Model: `{model}`" + (f" with adapter `{adapter}`" if adapter else "") + "\n"
        + (f"- Base model: `{base_model}`\n" if base_model else "")
        + (f"- Precision: {quant}\n" if quant else "")
        + f"- Verification: {verified}\n"
        + f"- Use it from an app: {use}\n\n"
        + "## Files\n\n" + files + "\n"
        + ("\n## Verification\n\n" + table(checks, ["check", "passed", "detail"]) if checks else "")
        + ("\n## Notes\n\n" + notes + "\n" if notes else "")
    )


def _card_meta(folder: Path) -> str:
    """The front matter of the training card that produced ``folder`` (a run's merged/ or the run)."""
    for candidate in (folder / "README.md", folder.parent / "README.md"):
        if candidate.is_file():
            yaml, _ = split_front_matter(candidate.read_text(encoding="utf-8"))
            if yaml:
                return yaml
    return ""


def _base_model_of(folder: Path) -> str | None:
    match = re.search(r'^base_model: (".*")$', _card_meta(folder), re.M)
    return _unquote(match.group(1)) if match else None


def _datasets_of(folder: Path) -> list[str]:
    yaml = _card_meta(folder)
    block = re.search(r"^datasets:\n((?:  - .*\n)+)", yaml, re.M)
    if not block:
        return []
    return [_unquote(line.strip()[2:]) for line in block.group(1).splitlines()]


def _unquote(text: str) -> str:
    """The string of a :func:`_quote` result."""
    return json.loads(re.sub(r"\\U([0-9a-f]{8})", lambda m: chr(int(m.group(1), 16)), text))


def write_deployment_card(report: Any, *, model: str, adapter: str | None = None,
                          quant: str | None = None) -> Path | None:
    """Write ``README.md`` into the deployment folder (unless the deployer wrote one)."""
    out = Path(report.out)
    if not out.is_dir():
        return None
    path = out / "README.md"
    if path.exists() and "wilson deploy" not in path.read_text(encoding="utf-8", errors="replace"):
        path = out / "MODEL_CARD.md"
    path.write_text(deployment_card(report, model=model, adapter=adapter, quant=quant), encoding="utf-8")
    return path
