"""``wilson serve``: which provider runs a deployment."""

from __future__ import annotations

from pathlib import Path


class DeploymentError(ValueError):
    """A deployment ``wilson serve`` cannot run (the message says what it expected)."""


def provider_spec(deployment: str) -> str:
    """``NAME:MODEL`` for a GGUF file, an ONNX folder, a transformers folder, or a spec given as it is."""
    path = Path(deployment).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return f"llamacpp:{path}"
        raise DeploymentError(f"{deployment}: a file must be a .gguf model (or give NAME:MODEL)")
    if path.is_dir():
        if list(path.glob("*.gguf")) and not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return f"llamacpp:{ggufs[0]}"
            raise DeploymentError(f"{deployment} holds several .gguf files: name one")
        if list(path.rglob("*.onnx")):
            return f"onnx:{path}"
        if (path / "config.json").is_file():
            return f"transformers:{path}"
        raise DeploymentError(f"{deployment}: no .gguf, .onnx or transformers model (config.json) in it")
    if ":" in deployment and not deployment.startswith((".", "/", "~")):
        return deployment
    raise DeploymentError(f"{deployment}: no such file or folder (or give NAME:MODEL, e.g. ollama:qwen2.5)")
