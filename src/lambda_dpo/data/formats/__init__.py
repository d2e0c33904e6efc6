"""The data formats `load_lists` reads: one module per format, each with ``parse`` and ``ASPECTS``.

``parse(record, origin, aspects)`` checks one record and returns a `PreferenceList` (HelpSteer2: one
row, grouped by prompt afterwards). ``ASPECTS`` is the aspects a fixed-schema format can give, or
None for any (native). To add a format, write its module and register it in `PARSERS`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from . import helpsteer2, native, pairwise, ultrafeedback

PARSERS: dict[str, Callable[[Mapping, str, tuple[str, ...] | None], Any]] = {
    "native": native.parse,
    "ultrafeedback": ultrafeedback.parse,
    "helpsteer2": helpsteer2.parse,
    "pairwise": pairwise.parse,
}
FORMAT_ASPECTS: dict[str, tuple[str, ...] | None] = {
    "native": native.ASPECTS,
    "ultrafeedback": ultrafeedback.ASPECTS,
    "helpsteer2": helpsteer2.ASPECTS,
    "pairwise": pairwise.ASPECTS,
}
FORMATS = tuple(PARSERS)  # the values of `format` besides "auto": one parser each

__all__ = ["PARSERS", "FORMAT_ASPECTS", "FORMATS", "helpsteer2", "native", "pairwise", "ultrafeedback"]
