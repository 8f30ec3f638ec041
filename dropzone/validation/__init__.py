"""Streaming file validation against a dataset contract: CSV, JSON Lines (both optionally gzip) and Parquet.

Pure Python with pyarrow and numpy, no AWS: the ingest function hands in any binary file-like object.
"""

from dropzone.validation.report import ACCEPTED, QUARANTINED, ValidationReport
from dropzone.validation.validator import detect_format, validate_path, validate_stream

__all__ = ["ACCEPTED", "QUARANTINED", "ValidationReport", "detect_format", "validate_path", "validate_stream"]
