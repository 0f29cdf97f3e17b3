"""A llama.cpp process: ``node runner.mjs`` (node-llama-cpp's prebuilt llama.cpp) spoken to
in JSON lines.  One :class:`LlamaCppRunner` holds one loaded GGUF (plus LoRA adapters).

The runner ships in the package (``wilson_gguf/node/``); its pinned node-llama-cpp is
installed on first use into ``$WILSON_CACHE_DIR`` (:mod:`wilson_gguf.node_runtime`, or
``wilson setup`` ahead of time); ``$WILSON_GGUF_RUNNER_DIR`` names a ready folder instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wilson_core.errors import WilsonError


class RunnerError(WilsonError):
    """llama.cpp could not be started or answered with an error."""


def runner_dir() -> Path:
    """Where the runner runs (its Node packages may not be installed yet: see :func:`check_runner`)."""
    from .node_runtime import RUNTIME

    return RUNTIME.folder()


def node_available() -> bool:
    return shutil.which("node") is not None


def runner_ready() -> str | None:
    """``None`` when GGUF models can run here (now, or after installing the Node packages)."""
    from .node_runtime import RUNTIME

    return RUNTIME.problem()


def check_runner() -> tuple[str, Path]:
    """``(node executable, runner.mjs)``, installing node-llama-cpp on first use.

    A :class:`RunnerError` says what to install when Node or npm is missing.
    """
    from wilson_core.noderuntime import NodeRuntimeError, ensure

    from .node_runtime import RUNTIME

    try:
        folder = ensure(RUNTIME)
    except NodeRuntimeError as exc:
        raise RunnerError(str(exc)) from None
    script = folder / "runner.mjs"
    if not script.is_file():
        raise RunnerError(f"the llama.cpp runner {script} is missing (set WILSON_GGUF_RUNNER_DIR)")
    return shutil.which("node") or "node", script


class LlamaCppRunner:
    """A GGUF model loaded in llama.cpp, in a child process.

    :param exact: flash attention off and an F32 KV cache (for comparisons with PyTorch).
    :param lora: LoRA adapter GGUF files applied at scale 1 (or ``(path, scale)`` pairs).
    """

    def __init__(self, model: str | Path, *, lora: Sequence[Any] = (), exact: bool = False,
                 context: int = 1024, threads: int = 1, timeout: float = 300.0) -> None:
        node, script = check_runner()
        model = Path(model).resolve()  # the runner's working folder is the node package
        if not model.is_file():
            raise RunnerError(f"GGUF file {model} does not exist")
        args = [node, str(script), str(model), "--context", str(context), "--threads", str(threads)]
        for item in lora:
            path, scale = (item, 1.0) if isinstance(item, (str, Path)) else item
            if not Path(path).is_file():
                raise RunnerError(f"LoRA adapter GGUF {path} does not exist")
            args += ["--lora", f"{Path(path).resolve()}={scale}"]
        if exact:
            args.append("--exact")
        self.model = model
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", cwd=str(script.parent),
        )
        ready = self._read()
        if not ready.get("ok"):
            self.close()
            raise RunnerError(f"llama.cpp could not load {model}: {ready.get('error')}")
        self.info = self.request("info")

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise RunnerError(f"the llama.cpp runner exited (code {self._proc.poll()}): {err.strip()[-2000:]}")
        try:
            return json.loads(line)
        except ValueError:
            raise RunnerError(f"the llama.cpp runner wrote something unexpected: {line[:300]!r}") from None

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its answer (``{"partial": true}`` lines before it are skipped)."""
        *_, answer = self.iter_request(op, **fields)
        return answer

    def iter_request(self, op: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Send one request; yield its ``{"partial": true}`` lines as they come, then its answer.

        Closing the generator early still reads the request's remaining lines (under the
        lock), so the next request gets its own answer.
        """
        with self._lock:
            if self._proc.poll() is not None:
                raise RunnerError(f"the llama.cpp runner for {self.model} is not running")
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self._proc.stdin.flush()
            answer = self._read()
            try:
                while answer.get("partial"):
                    yield answer
                    answer = self._read()
            finally:
                while answer.get("partial"):  # abandoned: read up to the answer
                    answer = self._read()
        if not answer.get("ok"):
            raise RunnerError(f"llama.cpp {op} failed: {answer.get('error')}")
        yield answer

    # -- operations --------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        return list(self.request("tokenize", text=text)["tokens"])

    def detokenize(self, tokens: Sequence[int]) -> str:
        return str(self.request("detokenize", tokens=list(tokens))["text"])

    def next_token_probs(self, tokens: Sequence[int]) -> list[float]:
        """The next-token distribution after ``tokens`` over the whole vocabulary."""
        return list(self.request("probs", tokens=list(tokens))["probs"])

    def greedy(self, tokens: Sequence[int], n: int) -> list[int]:
        """``n`` argmax tokens after ``tokens`` (end-of-generation tokens are not special)."""
        return list(self.request("greedy", tokens=list(tokens), n=n)["tokens"])

    def generate(self, tokens: Sequence[int], max_tokens: int, temperature: float = 0.0,
                 seed: int | None = None, top_p: float | None = None, *, grammar: str | None = None,
                 json_schema: Any = None, wrap: tuple[str, str] | None = None) -> dict[str, Any]:
        """Tokens after ``tokens``: ``{"tokens", "text", "stopped"}``.  ``grammar`` (GBNF) or
        ``json_schema`` (``wrap``: literal text put around it) constrain every token."""
        return self.request("generate", **_generate_fields(tokens, max_tokens, temperature, seed, top_p,
                                                           grammar, json_schema, wrap))

    def iter_generate(self, tokens: Sequence[int], max_tokens: int, temperature: float = 0.0,
                      seed: int | None = None, top_p: float | None = None, *, grammar: str | None = None,
                      json_schema: Any = None, wrap: tuple[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`generate`, token by token: ``{"partial": true, "token", "text"}`` per token (``text``
        is the new text, an incomplete UTF-8 character held back), then the answer."""
        fields = _generate_fields(tokens, max_tokens, temperature, seed, top_p, grammar, json_schema, wrap)
        return self.iter_request("generate", stream=True, **fields)

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> LlamaCppRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _generate_fields(tokens: Sequence[int], max_tokens: int, temperature: float, seed: int | None,
                     top_p: float | None, grammar: str | None, json_schema: Any,
                     wrap: tuple[str, str] | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"tokens": list(tokens), "max_tokens": max_tokens, "temperature": temperature,
                              "seed": seed, "top_p": top_p}
    if grammar:
        fields["grammar"] = grammar
    if json_schema is not None:
        fields["json_schema"] = json_schema
        if wrap:
            fields["wrap"] = list(wrap)
    return fields
