"""``wilson deploy ollama``: GGUF files + a Modelfile, created in Ollama when a server is there.

    wilson deploy ollama --model base/ --adapter adapter/ --out bundle/ --name wilson-finance
    wilson deploy ollama --model merged/ --out bundle/ --quant q8_0 --host http://gpu-box:11434

The GGUF files come from the ``gguf`` deployer (``--verify`` checks them in llama.cpp).
The Modelfile has ``FROM`` (the model GGUF), ``ADAPTER`` (the LoRA GGUF, when
``--adapter`` is given without ``-o merge=true``), a ``TEMPLATE`` that renders exactly what
the training chat template renders (checked on probe conversations), ``PARAMETER stop``
for the end tokens, ``PARAMETER temperature 0`` and an optional ``SYSTEM``
(``-o system=TEXT``).  With ``--host`` (or a server at the default address) the model is
created through the HTTP API; otherwise the bundle is written and the ``ollama create``
command printed.  Options: ``system``, ``template_file``, ``merge``, ``temperature``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import attrs

from wilson_core.interfaces import DeployConfig, Deployer, DeployError, DeployReport

from .client import DEFAULT_HOST, OllamaClient, sha256_digest

OWN_OPTIONS = {"system", "template_file", "temperature"}


def model_name(config: DeployConfig) -> str:
    raw = config.name or Path(config.adapter or config.model).name or "wilson-model"
    name = re.sub(r"[^a-z0-9._:-]+", "-", raw.lower()).strip("-.")
    if not name:
        raise DeployError(f"cannot make an Ollama model name from {raw!r}; pass --name")
    return name


def modelfile_text(model_file: str, adapter_file: str | None, template: str, stops: list[str],
                   system: str | None, temperature: float) -> str:
    for text in (template, system or ""):
        if '"""' in text or text.endswith('"'):
            raise DeployError('the TEMPLATE or SYSTEM contains """ or ends with ", which a Modelfile '
                              "cannot quote")
    lines = [f"FROM ./{model_file}"]
    if adapter_file:
        lines.append(f"ADAPTER ./{adapter_file}")
    lines.append(f'TEMPLATE """{template}"""')
    for stop in stops:
        lines.append(f"PARAMETER stop {_quote(stop)}")
    lines.append(f"PARAMETER temperature {temperature:g}")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_modelfile(text: str) -> dict[str, Any]:
    """The instructions of a Modelfile (FROM, ADAPTER, TEMPLATE, PARAMETER, SYSTEM, ...);
    triple-quoted values may span lines."""
    result: dict[str, Any] = {"parameters": {}}
    pos = 0
    while pos < len(text):
        line_end = text.find("\n", pos)
        line_end = len(text) if line_end < 0 else line_end
        line = text[pos:line_end]
        key, _, value = line.partition(" ")
        if value.startswith('"""'):
            close = text.find('"""', pos + len(key) + 4)
            if close < 0:
                raise DeployError(f"unterminated \"\"\" after {key} in the Modelfile")
            value = text[pos + len(key) + 4:close]
            line_end = text.find("\n", close)
            line_end = len(text) if line_end < 0 else line_end
        pos = line_end + 1
        if not key or key.startswith("#"):
            continue
        if key == "PARAMETER":
            name, _, raw = value.partition(" ")
            if raw.startswith('"'):
                raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            result["parameters"].setdefault(name, []).append(raw)
        else:
            result[key] = value
    return result


class OllamaDeployer(Deployer):
    """GGUF + Modelfile for Ollama, created through its HTTP API when a server is reachable."""

    description = "Ollama: GGUF + Modelfile (FROM/ADAPTER/TEMPLATE/stop), created via the HTTP API"

    @property
    def quant_types(self) -> tuple[str, ...]:  # type: ignore[override]
        from wilson_gguf.deployer import QUANTS

        return ("q8_0",) + tuple(q for q in QUANTS if q != "q8_0")

    def deploy(self, config: DeployConfig) -> DeployReport:
        from wilson_gguf.deployer import GgufDeployer
        from wilson_gguf.provider import read_gguf_chat_metadata, render_chat

        from .templates import choose_template

        started = time.perf_counter()
        quant = self.resolve_quant(config)
        options = dict(config.options)
        name = model_name(config)
        custom = None
        if options.get("template_file"):
            path = Path(str(options["template_file"]))
            if not path.is_file():
                raise DeployError(f"-o template_file={path}: no such file")
            custom = path.read_text(encoding="utf-8")
        system = options.get("system")
        temperature = float(options.get("temperature", 0))
        client = None
        explicit_host = config.host is not None
        if explicit_host:
            client = OllamaClient(str(config.host))
            if not client.reachable():
                raise DeployError(
                    f"cannot reach Ollama at {client.host} (is `ollama serve` running there?); "
                    "leave out --host to only write the bundle"
                )
        gguf_options = {k: v for k, v in options.items() if k not in OWN_OPTIONS}
        gguf_report = GgufDeployer().deploy(attrs.evolve(config, quant=quant, options=gguf_options))
        files = [Path(f) for f in gguf_report.files]
        model_file, adapter_file = files[0], (files[1] if len(files) > 1 else None)
        meta = read_gguf_chat_metadata(model_file)
        if not meta["chat_template"]:
            raise DeployError(f"{model_file} has no chat template: Ollama needs one to chat")

        def hf_render(messages: list[dict[str, Any]], tools: Any, add_generation_prompt: bool) -> str:
            return render_chat(meta["chat_template"], messages, tools, meta["bos_token"],
                               meta["eos_token"], add_generation_prompt=add_generation_prompt)

        template_name, template = choose_template(meta["chat_template"], hf_render, custom)
        if meta["add_bos_token"] and meta["bos_token"]:
            template = meta["bos_token"] + template  # Ollama does not add BOS by itself
        stops = [meta["eos_token"]] if meta["eos_token"] else []
        if "<|im_end|>" in meta["chat_template"]:
            stops.append("<|im_end|>")
        stops = list(dict.fromkeys(stops))
        out = Path(gguf_report.out)
        modelfile = out / "Modelfile"
        modelfile.write_text(modelfile_text(model_file.name, adapter_file.name if adapter_file else None,
                                            template, stops, system, temperature), encoding="utf-8")
        notes = []
        details = dict(gguf_report.details)
        details.update({"template": template_name, "stops": stops, "model_name": name})
        if client is None:
            probe = OllamaClient(DEFAULT_HOST)
            client = probe if probe.reachable(timeout=1.0) else None
        if client is not None:
            digests = {}
            uploaded = []
            for path in [model_file] + ([adapter_file] if adapter_file else []):
                digest, sent = client.push_blob(path, sha256_digest(path))
                digests[path.name] = digest
                if sent:
                    uploaded.append(path.name)
            body: dict[str, Any] = {
                "model": name,
                "files": {model_file.name: digests[model_file.name]},
                "template": template,
                "parameters": {"stop": stops, "temperature": temperature},
            }
            if adapter_file:
                body["adapters"] = {adapter_file.name: digests[adapter_file.name]}
            if system:
                body["system"] = system
            client.create(body)
            details.update({"host": client.host, "uploaded": uploaded, "digests": digests})
            notes.append(f"created Ollama model {name!r} at {client.host} "
                         f"({len(uploaded)} blob(s) uploaded, {len(digests) - len(uploaded)} already there)")
        else:
            notes.append(f"No Ollama server at {DEFAULT_HOST}; create the model with:")
            notes.append(f"  ollama create {name} -f {modelfile}")
        return DeployReport(
            target="ollama", out=str(out), files=[*gguf_report.files, str(modelfile)],
            provider=f"ollama:{name}", checks=gguf_report.checks, notes=notes,
            seconds=time.perf_counter() - started, details=details,
        )
