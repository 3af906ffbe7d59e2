"""What one extraction run does: the options the asset's run config maps onto, validated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cm_pipeline.chartmogul.vocabulary import MAX_PER_PAGE, STATUS_FILTERS

ALL_PARTITION = "all"  # the single partition of an unpartitioned (single-cursor) pass


@dataclass(frozen=True)
class ExtractOptions:
    """What one extraction run does (the asset's run config maps onto this)."""

    per_page: int = 200
    max_workers: int = 10  # requests in flight at most (the client's limiter caps real concurrency and rps)
    data_source_uuid: str | None = None
    system: str | None = None
    partition_by_status: bool = True
    split_large_partitions: bool = True  # split statuses by data source (plan.py)
    full_refresh: bool = False
    resume_max_age: timedelta = timedelta(hours=24)
    verify_deletions: bool = True
    max_deletion_checks: int = 10_000
    progress_interval: float = 3.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.per_page, bool)
            or not isinstance(self.per_page, int)
            or not 1 <= self.per_page <= MAX_PER_PAGE
        ):
            raise ValueError(f"per_page: must be an integer from 1 to 200, got {self.per_page!r}")
        if not isinstance(self.max_workers, int) or not 1 <= self.max_workers <= 32:
            raise ValueError(f"max_workers: must be an integer from 1 to 32, got {self.max_workers!r}")
        for name in ("data_source_uuid", "system"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}: must be a non-empty string or unset, got {value!r}")
        if self.max_deletion_checks < 0:
            raise ValueError(f"max_deletion_checks: must be >= 0, got {self.max_deletion_checks!r}")
        if self.progress_interval <= 0:
            raise ValueError(f"progress_interval: must be positive, got {self.progress_interval!r}")

    @property
    def partitions(self) -> list[str]:
        return list(STATUS_FILTERS) if self.partition_by_status else [ALL_PARTITION]

    @property
    def splits(self) -> bool:
        """Whether statuses may be split by data source: not with one worker (the walk is one request at a
        time whatever its plan), nor when a data source filter is set (one data source already)."""
        return (
            self.partition_by_status
            and self.split_large_partitions
            and self.data_source_uuid is None
            and self.max_workers > 1
        )

    @property
    def filters(self) -> dict:
        return {"data_source_uuid": self.data_source_uuid, "system": self.system}
