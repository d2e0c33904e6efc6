"""Preference data: the `PreferenceList` type, loaders for each format, and load summaries."""

from .fields import parse_prompt, parse_response
from .loaders import FORMATS, SourceNotFoundError, detect_format, load_lists
from .schema import DataError, LoadReport, PreferenceList
from .sources import as_record, read_source
from .summary import format_summary, summarize

__all__ = [
    "PreferenceList",
    "DataError",
    "LoadReport",
    "SourceNotFoundError",
    "load_lists",
    "detect_format",
    "summarize",
    "format_summary",
    "FORMATS",
    "read_source",
    "as_record",
    "parse_prompt",
    "parse_response",
]
