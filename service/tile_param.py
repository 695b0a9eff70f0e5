"""The `tile` parameter of the detection routes (tiled inference for small objects, see
export/tiling.py): `off`, `auto` or an N x N grid; DETECTOR_TILE when a request names none."""

from __future__ import annotations

from fastapi import Query

from export.tiling import parse_tile
from service.errors import InvalidParameterError

TILE_DESCRIPTION = (
    "tiled inference for small objects: `off`, `auto` (tiles only large images) or N (an N x N "
    "grid of overlapping tiles, plus the whole image); at most DETECTOR_MAX_TILES tiles per "
    "image; default DETECTOR_TILE"
)
TILE = Query(None, description=TILE_DESCRIPTION)


def resolve_tile(value: object, default: str | int) -> str | int:
    """The request's `tile` (None: `default`), or InvalidParameterError (422)."""
    if value is None:
        value = default
    try:
        return parse_tile(value)  # type: ignore[arg-type]  # any other JSON value: ValueError
    except ValueError as exc:
        raise InvalidParameterError(f"parameter tile: {exc}") from None
