"""The Spark extract stage: raw logs for a window -> daily aggregates, vocabularies, stats."""

from genrec_core.extract.job import ExtractResult, run_extract

__all__ = ["ExtractResult", "run_extract"]
