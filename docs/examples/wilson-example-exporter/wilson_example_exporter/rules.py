"""A redaction rule for member numbers, added to every redacting export."""

from __future__ import annotations

import re
from collections.abc import Iterator

from wilson_core import hookimpl

MEMBER_ID = re.compile(r"\bMBR-\d{6}\b")


class MemberIds:
    """Rules need a ``name`` (placeholders read ``<MEMBER_ID_1>``) and ``find(text)``."""

    name = "MEMBER_ID"

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for match in MEMBER_ID.finditer(text):
            yield match.span()


@hookimpl
def wilson_redaction_rules() -> list[MemberIds]:
    return [MemberIds()]
