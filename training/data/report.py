"""What a loader kept, dropped and skipped; strict mode raises instead of skipping."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from training.data.errors import DatasetError
from training.data.sample import Sample

logger = logging.getLogger(__name__)

MAX_LOGGED_PROBLEMS = 20


@dataclass
class LoadReport:
    """Counts of one `load_voc` / `load_coco` call (pass one in to get it filled)."""

    images: int = 0  # samples returned
    objects: int = 0  # objects in the returned samples
    difficult: int = 0  # of which flagged difficult / iscrowd
    empty_images: int = 0  # images with no object of the selected classes (kept or dropped)
    dropped_empty_images: int = 0  # of those, dropped because drop_empty=True
    dropped_objects: int = 0  # objects of classes outside the selection (not an error)
    dropped_by_class: dict[str, int] = field(default_factory=dict)  # name -> dropped count
    clipped_boxes: int = 0  # boxes clipped back into the image (within the tolerance)
    skipped_images: int = 0  # invalid images skipped (skip_invalid=True)
    skipped_objects: int = 0  # invalid objects skipped (skip_invalid=True)
    problems: list[str] = field(default_factory=list)  # one message per skip

    def summary(self) -> str:
        return (
            f"{self.images} images, {self.objects} objects ({self.difficult} difficult); "
            f"{self.empty_images} empty ({self.dropped_empty_images} dropped); "
            f"{self.dropped_objects} objects of other classes dropped {self.dropped_by_class}; "
            f"{self.clipped_boxes} boxes clipped; skipped {self.skipped_images} invalid images "
            f"and {self.skipped_objects} invalid objects"
        )

    def admit(self, sample: Sample, drop_empty: bool) -> bool:
        """Count a loaded sample; False when it is to be left out (no objects, drop_empty)."""
        if sample.num_objects == 0:
            self.empty_images += 1
            if drop_empty:
                self.dropped_empty_images += 1
                return False
        self.objects += sample.num_objects
        self.difficult += int(sample.difficult.sum())
        return True

    def drop(self, name: str) -> None:
        """Count an object of a class outside the selection."""
        self.dropped_objects += 1
        self.dropped_by_class[name] = self.dropped_by_class.get(name, 0) + 1


class ProblemSink:
    """Raises `DatasetError` (strict) or records and logs a skip (skip_invalid=True)."""

    def __init__(self, report: LoadReport, skip_invalid: bool) -> None:
        self.report = report
        self.skip_invalid = skip_invalid

    def _record(self, message: str) -> None:
        if not self.skip_invalid:
            raise DatasetError(message)
        self.report.problems.append(message)
        if len(self.report.problems) <= MAX_LOGGED_PROBLEMS:
            logger.warning("skipping: %s", message)
        elif len(self.report.problems) == MAX_LOGGED_PROBLEMS + 1:
            logger.warning("more invalid annotations; see LoadReport.problems")

    def bad_image(self, message: str) -> None:
        self._record(message)
        self.report.skipped_images += 1

    def bad_object(self, message: str) -> None:
        self._record(message)
        self.report.skipped_objects += 1

    def finish(self, source: str) -> None:
        if self.report.problems:
            logger.warning("%s: %s", source, self.report.summary())
        else:
            logger.info("%s: %s", source, self.report.summary())
