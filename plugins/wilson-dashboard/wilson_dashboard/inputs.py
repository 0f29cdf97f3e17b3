"""What a browser may send: query parameters, JSON bodies, label fields, regenerate providers.

Every check raises :class:`~wilson_core.errors.RecordError` (answered as a 400) saying what is wrong.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request

from wilson_core.errors import RecordError

#: providers a browser may name for ``regenerate`` (besides the one given with --regenerate-with),
#: and the driver options it may set with their types: nothing that names a file, a server or a key.
BROWSER_PROVIDERS: dict[str, dict[str, tuple[type, ...]]] = {
    "scripted": {"script": (list,), "cycle": (bool,), "latency_s": (int, float)},
    "openai": {},
    "ollama": {},
}
_DIGITS = re.compile(r"[0-9]{1,18}")


def int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter in ``[low, high]`` (values above are capped), or a 400."""
    if value is None or value == "":
        return default
    if not _DIGITS.fullmatch(value):
        raise RecordError(f"{name} must be a whole number from {low} to {high}, got {value[:40]!r}")
    return max(low, min(int(value), high))


def string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecordError(f"{name} must be a list of texts")
    return value


#: the label fields a request may set, and what each must be.
LABEL_TYPES: dict[str, tuple[type, ...]] = {
    "rating": (int,), "preference": (str,), "tags": (list,), "add_tags": (list,),
    "remove_tags": (list,), "notes": (str,), "clear": (list,),
}


def label_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The label fields of a request body, each of its right type."""
    unknown = set(data) - LABEL_TYPES.keys()
    if unknown:
        raise RecordError(f"unknown field(s): {', '.join(sorted(unknown)[:10])}")
    fields = {k: v for k, v in data.items() if v is not None}
    for key, value in fields.items():
        if not isinstance(value, LABEL_TYPES[key]) or isinstance(value, bool):
            raise RecordError(f"{key} has the wrong type ({type(value).__name__})")
        if isinstance(value, list):
            string_list(value, key)
    return fields


async def json_body(request: Request) -> dict[str, Any]:
    """The request body, a JSON object."""
    try:
        data = await request.json()
    except ValueError:
        raise RecordError("the request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise RecordError("the request body must be a JSON object")
    return data


def check_regenerate(provider: str, options: dict[str, Any], configured: str | None) -> None:
    """Refuse a provider or driver option a browser must not choose (a file, a server, a key).

    :raises RecordError: what is refused and why.
    """
    name = provider.split(":", 1)[0].strip()
    if ":" not in provider or not name:
        raise RecordError(f"provider must be written NAME:MODEL, got {provider[:80]!r}")
    allowed = BROWSER_PROVIDERS.get(name)
    if allowed is None:
        if provider == configured and not options:
            return
        raise RecordError(
            f"the provider {name!r} cannot be chosen from the browser; start the dashboard with "
            f"--regenerate-with {name}:MODEL"
        )
    for key, value in options.items():
        kinds = allowed.get(key)
        if kinds is None:
            raise RecordError(f"the option {key[:40]!r} cannot be set from the browser")
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            raise RecordError(f"the option {key!r} has the wrong type ({type(value).__name__})")
