"""``wilson setup``: prepare optional runtimes ahead of time (placeholder, filled below)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    pass
