"""The `classes` filter of the API: class names -> the class ids kept by export.postprocess."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Query

from service.errors import InvalidParameterError

# The 422 for unknown names quotes a few of them, each cut short: a 12 KB URL of made-up
# names must not come back as a 21 KB answer (the model's own class list is sent in full).
QUOTED_NAMES = 5
QUOTED_NAME_CHARS = 40

CLASSES_DESCRIPTION = (
    "only these classes, by name: comma-separated (`person,car`) or repeated; unknown names "
    "-> 422 listing the model's classes (GET /model). The filter is applied before NMS and "
    "max_detections."
)


async def classes_query(
    classes: list[str] | None = Query(None, description=CLASSES_DESCRIPTION),
) -> list[str] | None:
    """FastAPI dependency for the `classes` query parameter (raw names, parsed later against
    the loaded model's class list). `async`: FastAPI runs a plain `def` dependency on its
    thread pool, one thread hand-off per request for nothing."""
    return classes


def parse_classes(
    values: Iterable[str] | str | None, class_names: tuple[str, ...]
) -> tuple[int, ...] | None:
    """Names (comma-separated and/or several values; case-insensitive) -> sorted class ids.

    None or only blanks -> None (no filter). Unknown names -> InvalidParameterError naming
    them and listing the valid ones.
    """
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    names = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    if not names:
        return None
    index = {name.lower(): i for i, name in enumerate(class_names)}
    unknown = [n for n in names if n.lower() not in index]
    if unknown:
        raise InvalidParameterError(
            f"classes: unknown class name(s) {_quoted(unknown)}; valid: {', '.join(class_names)}"
        )
    return tuple(sorted({index[n.lower()] for n in names}))


def _quoted(names: list[str]) -> str:
    """The first QUOTED_NAMES names, each at most QUOTED_NAME_CHARS long, and how many more."""
    shown = [repr(n if len(n) <= QUOTED_NAME_CHARS else n[:QUOTED_NAME_CHARS] + "...")
             for n in names[:QUOTED_NAMES]]  # fmt: skip
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")
