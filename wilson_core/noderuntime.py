"""Node packages that plugins run (llama.cpp through node-llama-cpp, Transformers.js).

A plugin ships its Node side inside its wheel: a folder with ``package.json``,
``package-lock.json`` and its ``.mjs`` scripts.  The pinned Node packages are
installed on first use (or ahead of time by ``wilson setup``) with
``npm ci --ignore-scripts`` into a cache folder keyed by the lockfile's hash::

    $WILSON_CACHE_DIR/node/<name>-<lock hash>/   (default ~/.cache/wilson)

and the scripts are copied beside the installed ``node_modules`` so Node
resolves the packages.  A source checkout where ``npm ci`` already ran in the
package's own folder (what ``nox`` does) uses that folder as it is; an
environment variable (``NodePackage.env_var``) names any other folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from attrs import field, frozen

from wilson_core.errors import WilsonError

#: files of a Node package folder that are copied into the cache (not node_modules).
SCRIPT_SUFFIXES = (".mjs", ".js", ".cjs", ".json")


class NodeRuntimeError(WilsonError):
    """Node or npm is missing, or the Node packages could not be installed."""


def _mapping(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


@frozen
class NodePackage:
    """A plugin's Node side.

    :param name: short name, used for the cache folder (``wilson-gguf``).
    :param source: the folder inside the installed plugin with ``package.json``,
        ``package-lock.json`` and the scripts.
    :param marker: a path under ``node_modules`` that exists once installed
        (``node-llama-cpp``).
    :param purpose: what it is for, for messages (``llama.cpp for GGUF models``).
    :param env_var: an environment variable naming a ready folder instead.
    :param npm_env: extra environment for ``npm ci``.
    """

    name: str
    source: Path = field(converter=Path)
    marker: str
    purpose: str = ""
    env_var: str | None = None
    npm_env: dict[str, str] = field(factory=dict, converter=_mapping)

    def lock_hash(self) -> str:
        lock = self.source / "package-lock.json"
        data = lock.read_bytes() if lock.is_file() else (self.source / "package.json").read_bytes()
        return hashlib.sha256(data).hexdigest()[:12]

    def cache_folder(self) -> Path:
        return cache_dir() / "node" / f"{self.name}-{self.lock_hash()}"

    def installed_in(self, folder: Path) -> bool:
        return (folder / "node_modules" / self.marker).exists()

    def folder(self) -> Path:
        """Where it runs: the override, the source folder when installed there, else the cache."""
        if self.env_var and os.environ.get(self.env_var):
            return Path(os.environ[self.env_var])
        if self.installed_in(self.source):
            return self.source
        return self.cache_folder()

    def ready(self) -> bool:
        return node_executable() is not None and self.installed_in(self.folder())

    def problem(self) -> str | None:
        """``None`` when it can run now or be installed on first use; else what is missing."""
        if node_executable() is None:
            return f"Node.js 20 or later is needed for {self.purpose or self.name}: install node and npm"
        if self.installed_in(self.folder()):
            return None
        if self.env_var and os.environ.get(self.env_var):
            return (f"{self.marker} is not installed in {self.folder()} (${self.env_var}): "
                    f"run npm ci --ignore-scripts --prefix {self.folder()}")
        if npm_executable() is None:
            return f"npm is needed to install {self.marker} for {self.purpose or self.name}: install npm"
        return None


def cache_dir() -> Path:
    """``$WILSON_CACHE_DIR``, else ``$XDG_CACHE_HOME/wilson``, else ``~/.cache/wilson``."""
    configured = os.environ.get("WILSON_CACHE_DIR")
    if configured and configured != "off":
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "wilson" if xdg else Path.home() / ".cache" / "wilson"


def node_executable() -> str | None:
    return shutil.which("node")


def npm_executable() -> str | None:
    return shutil.which("npm")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _copy_scripts(source: Path, target: Path) -> None:
    for item in source.iterdir():
        if item.is_file() and item.suffix in SCRIPT_SUFFIXES:
            destination = target / item.name
            if not destination.exists() or destination.read_bytes() != item.read_bytes():
                shutil.copyfile(item, destination)


def ensure(package: NodePackage, *, say: Callable[[str], None] = _say, timeout: float = 1800.0) -> Path:
    """The folder to run ``package``'s scripts in, installing its Node packages first if needed.

    Raises :class:`NodeRuntimeError` with what to install when Node or npm is
    missing or ``npm ci`` fails.
    """
    if node_executable() is None:
        raise NodeRuntimeError(
            f"Node.js 20 or later is needed for {package.purpose or package.name}; install node and npm "
            "(https://nodejs.org or your system's package manager)"
        )
    folder = package.folder()
    if package.installed_in(folder):
        if folder != package.source and not (package.env_var and os.environ.get(package.env_var)):
            _copy_scripts(package.source, folder)
        return folder
    if package.env_var and os.environ.get(package.env_var):
        raise NodeRuntimeError(package.problem() or f"{package.marker} is not installed in {folder}")
    npm = npm_executable()
    if npm is None:
        raise NodeRuntimeError(
            f"npm is needed to install {package.marker} for {package.purpose or package.name} "
            f"(once, into {folder}); install npm, or run `wilson setup` where npm is available"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    say(f"wilson: installing {package.marker} for {package.purpose or package.name} into {folder} "
        "(npm ci --ignore-scripts; once, may take a minute)...")
    staging = Path(tempfile.mkdtemp(prefix=f".{package.name}-", dir=folder.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            if (package.source / name).is_file():
                shutil.copyfile(package.source / name, staging / name)
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            done = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, **package.npm_env})
        except subprocess.TimeoutExpired:
            raise NodeRuntimeError(f"npm ci for {package.name} did not finish in {timeout:.0f} s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-1500:]
            raise NodeRuntimeError(f"npm ci for {package.name} failed (exit {done.returncode}): {tail}")
        _copy_scripts(package.source, staging)
        try:
            os.replace(staging, folder)  # atomic: a concurrent install that finished first wins
        except OSError:
            if not package.installed_in(folder):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _copy_scripts(package.source, folder)
    say(f"wilson: {package.marker} installed in {folder}")
    return folder
