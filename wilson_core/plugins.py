"""Plugin loading: pluggy for broadcast hooks, stevedore for named drivers.

A broken third-party plugin is reported (entry point and distribution named)
and skipped, so it cannot take the CLI down; ``WILSON_STRICT_PLUGINS=1`` makes
every load error fatal.  A driver the user asked for by name fails loudly with
the names that are available.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .interfaces import NAMESPACES

GROUP = "wilson"


class PluginLoadWarning(UserWarning):
    """A plugin failed to load and was skipped."""


@dataclass(frozen=True)
class EntryPointInfo:
    name: str
    value: str
    group: str
    distribution: str
    version: str


def strict() -> bool:
    return os.environ.get("WILSON_STRICT_PLUGINS", "") not in ("", "0", "false", "no")


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)


def _info(ep: metadata.EntryPoint) -> EntryPointInfo:
    dist = getattr(ep, "dist", None)
    return EntryPointInfo(
        name=ep.name,
        value=ep.value,
        group=ep.group,
        distribution=dist.metadata["Name"] if dist else "?",
        version=dist.version if dist else "?",
    )


def _report(ep: metadata.EntryPoint, exc: BaseException) -> None:
    info = _info(ep)
    message = (
        f"plugin {info.name!r} ({info.value}) from distribution "
        f"{info.distribution} {info.version} failed to load: {type(exc).__name__}: {exc}"
    )
    if strict():
        raise PluginError(message + " (WILSON_STRICT_PLUGINS is set)") from exc
    logging.getLogger("wilson.plugins").warning("%s; skipped", message)


@lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every ``wilson`` entry point that loads."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for ep in _entry_points(GROUP):
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # any error in third-party code
            _report(ep, exc)
            continue
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=ep.name)
            _report(ep, exc)
    return pm


def hook() -> Any:
    """Shortcut for ``plugin_manager().hook``."""
    return plugin_manager().hook


def driver_entry_points(namespace: str) -> list[EntryPointInfo]:
    """The drivers declared in ``namespace``, without importing any of them."""
    seen: dict[str, EntryPointInfo] = {}
    for ep in _entry_points(namespace):
        seen.setdefault(ep.name, _info(ep))
    return list(seen.values())


def driver_names(namespace: str) -> list[str]:
    return [info.name for info in driver_entry_points(namespace)]


#: the distribution that provides each built-in driver, so an unknown name can say what to install.
PROVIDED_BY: dict[str, dict[str, str]] = {
    "wilson.exporters": {"sft": "wilson-exporters", "dpo": "wilson-exporters", "kto": "wilson-exporters",
                         "openai-chat": "wilson-exporters"},
    "wilson.trainers": {"lora-sft": "wilson-train", "lora-dpo": "wilson-train", "lora-kto": "wilson-train"},
    "wilson.deployers": {"gguf": "wilson-gguf", "ollama": "wilson-ollama", "transformersjs": "wilson-onnx"},
    "wilson.providers": {"transformers": "wilson-train", "llamacpp": "wilson-gguf", "onnx": "wilson-onnx"},
}


def install_hint(namespace: str, name: str) -> str:
    """``"; 'sft' is provided by wilson-exporters: pip install ..."`` for a built-in name, else ``""``."""
    dist = PROVIDED_BY.get(namespace, {}).get(name)
    if dist is None:
        return ""
    return (f". {name!r} is provided by the {dist} distribution, which is not installed: "
            f"pip install {dist} (or: wilson install {dist})")


def load_driver(namespace: str, name: str) -> type:
    """Import and return the driver class ``name`` of ``namespace`` (only that one).

    :raises PluginError: the name is unknown (the message lists the available
        names) or the driver fails to import.
    """
    from stevedore import driver  # imported here: start-up stays fast

    available = driver_names(namespace)
    kind = NAMESPACES.get(namespace, namespace)
    if name not in available:
        names = ", ".join(available) or "none installed"
        raise PluginError(
            f"unknown name {name!r} in {namespace} ({kind}); available: {names}{install_hint(namespace, name)}"
        )
    failures: list[str] = []

    def on_failure(_manager: Any, ep: Any, exc: BaseException) -> None:
        failures.append(f"{type(exc).__name__}: {exc}")

    cached = driver.DriverManager.ENTRY_POINT_CACHE.get(namespace)
    if cached is not None and name not in {ep.name for ep in cached}:
        # stevedore keeps a namespace's list for the whole process: refresh it
        # for a driver installed after the first lookup.
        driver.DriverManager.ENTRY_POINT_CACHE.pop(namespace, None)
    try:
        manager = driver.DriverManager(
            namespace, name, invoke_on_load=False, on_load_failure_callback=on_failure
        )
        return manager.driver
    except Exception as exc:
        detail = failures[0] if failures else f"{type(exc).__name__}: {exc}"
        info = next(i for i in driver_entry_points(namespace) if i.name == name)
        raise PluginError(
            f"{namespace} driver {name!r} ({info.value}, from {info.distribution} "
            f"{info.version}) failed to load: {detail}; available: "
            + ", ".join(n for n in available if n != name)
        ) from exc


def describe_plugins() -> dict[str, Any]:
    """Everything ``wilson plugins`` shows: hook implementations and drivers."""
    pm = plugin_manager()
    dists = {ep.name: _info(ep) for ep in _entry_points(GROUP)}
    hooks = []
    for name, plugin in pm.list_name_plugin():
        info = dists.get(name)
        hooks.append(
            {
                "name": name,
                "module": getattr(plugin, "__name__", repr(plugin)),
                "distribution": info.distribution if info else "(registered at run time)",
                "version": info.version if info else "",
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
            }
        )
    drivers = {
        namespace: [
            {
                "name": info.name,
                "target": info.value,
                "distribution": info.distribution,
                "version": info.version,
            }
            for info in driver_entry_points(namespace)
        ]
        for namespace in NAMESPACES
    }
    return {"hooks": hooks, "drivers": drivers, "python": sys.version.split()[0]}
