"""A benchmark's answer extraction as a Python function.

lm-eval applies the benchmark's filter (``extract.regex`` + take_first, or whitespace removal)
at eval time; the mixture stage applies the same rule to training answers, so label strings
that the eval would not parse are caught before training.
"""

from __future__ import annotations

import re

from ..spec import BenchmarkSpec


def answer_parser(spec: BenchmarkSpec):
    """The benchmark's answer extraction as a function (what its lm-eval filter keeps), so
    training answers can be checked against what the eval will actually parse."""
    if spec.extract:
        pattern = re.compile(spec.extract["regex"])
        group = spec.extract.get("group_select", 0)

        def parse(text: str) -> str | None:
            found = pattern.findall(text)
            if not found:
                return None
            hit = found[group]
            return hit[0] if isinstance(hit, tuple) else hit

        return parse
    return lambda text: text.strip() or None
