"""What a label change may be: the statuses and sources, star and tag checks, the merged change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attrs import field, frozen

from wilson_core.errors import AnnotationRefused
from wilson_core.records import ANNOTATION_SOURCES, PREFERENCES

STATUSES = ("accepted", "proposed", "rejected")
#: sources whose labels count as a person's (or a rule's) decision; judge labels are proposals.
HUMAN_SOURCES = ("human", "import", "rule")
MAX_TAG_LENGTH = 64
CLEARABLE = ("rating", "preference", "pair_id", "notes", "corrected_response")

_FIELDS = ("rating", "preference", "pair_id", "tags", "notes", "corrected_response")


@frozen
class _Change:
    """A validated change to a label: which fields to set, which to clear, tag edits."""

    values: dict[str, Any] = field(factory=dict)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    replace_tags: tuple[str, ...] | None = None
    clear: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        *,
        rating: Any = None,
        preference: Any = None,
        tags: Iterable[str] | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        notes: Any = None,
        corrected_response: Any = None,
        pair_id: Any = None,
        clear: Iterable[str] = (),
    ) -> _Change:
        values: dict[str, Any] = {}
        if rating is not None:
            values["rating"] = check_rating(rating)
        if preference is not None:
            if preference not in PREFERENCES:
                raise AnnotationRefused(
                    f"preference must be one of {', '.join(PREFERENCES)}, got {preference!r}"
                )
            values["preference"] = preference
        for name, value in (("notes", notes), ("corrected_response", corrected_response)):
            if value is not None:
                if not isinstance(value, str):
                    raise AnnotationRefused(f"{name} must be text, got {type(value).__name__}")
                values[name] = value
        if pair_id is not None:
            values["pair_id"] = str(pair_id)
        cleared = frozenset(clear)
        unknown = cleared - set(CLEARABLE) - {"tags"}
        if unknown:
            raise AnnotationRefused(f"cannot clear {', '.join(sorted(unknown))}")
        return cls(
            values=values,
            add_tags=check_tags(add_tags),
            remove_tags=check_tags(remove_tags),
            replace_tags=check_tags(tags) if tags is not None else None,
            clear=cleared,
        )

    def require_something(self) -> None:
        if not (self.values or self.add_tags or self.remove_tags or self.clear) and self.replace_tags is None:
            raise AnnotationRefused(
                "nothing to change: give a rating, preference, tags, notes or a corrected response"
            )

    def apply(self, previous: dict[str, Any]) -> dict[str, Any]:
        state = {name: previous.get(name) for name in _FIELDS}
        state["tags"] = list(previous.get("tags") or [])
        for name in self.clear:
            state[name] = [] if name == "tags" else None
        state.update(self.values)
        if self.replace_tags is not None:
            state["tags"] = list(self.replace_tags)
        for tag in self.add_tags:
            if tag not in state["tags"]:
                state["tags"].append(tag)
        state["tags"] = [t for t in state["tags"] if t not in self.remove_tags]
        return state


def check_rating(value: Any) -> int:
    """A star value 1-5, or :class:`AnnotationRefused`."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise AnnotationRefused(f"a rating is a whole number of stars from 1 to 5, got {value!r}")
    return value


def check_tags(tags: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(tags, str):
        tags = [tags]
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise AnnotationRefused(f"a tag is non-empty text, got {tag!r}")
        tag = tag.strip()
        if len(tag) > MAX_TAG_LENGTH:
            raise AnnotationRefused(f"a tag is at most {MAX_TAG_LENGTH} characters: {tag[:20]!r}...")
        if tag not in cleaned:
            cleaned.append(tag)
    return tuple(cleaned)


def _check_stream(source: str, annotator: str, status: str) -> None:
    if source not in ANNOTATION_SOURCES:
        raise AnnotationRefused(
            f"source must be one of {', '.join(ANNOTATION_SOURCES)}, got {source!r}"
        )
    if not isinstance(annotator, str) or not annotator.strip():
        raise AnnotationRefused("annotator must be a non-empty name")
    if status not in STATUSES:
        raise AnnotationRefused(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if source != "judge" and status != "accepted":
        raise AnnotationRefused(f"only judge labels can be {status!r}; {source} labels are accepted")
