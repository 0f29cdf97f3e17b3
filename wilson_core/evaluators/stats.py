"""Means with 95% intervals: Wilson's score interval for rates, the normal one otherwise."""

from __future__ import annotations

import math
from collections.abc import Sequence

from wilson_core.interfaces import EvalScore

Z95 = 1.959963984540054


def wilson_interval(successes: float, count: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a rate (``successes`` may be fractional: ties count half)."""
    if count <= 0:
        return 0.0, 1.0
    p = successes / count
    denominator = 1 + z * z / count
    centre = (p + z * z / (2 * count)) / denominator
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / denominator
    # The interval always holds p; min/max keep it so where float rounding would not (p = 0 or 1).
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def mean_interval(values: Sequence[float]) -> EvalScore:
    """The mean of ``values`` with a 95% interval (``value`` is ``None`` for no values).

    Values that are all 0 or 1 get Wilson's interval; others the normal approximation,
    clipped to the range of the values seen and [0, 1] when they lie in it.
    """
    count = len(values)
    if count == 0:
        return EvalScore(value=None, count=0)
    mean = sum(values) / count
    if all(v in (0.0, 0.5, 1.0) for v in values):
        low, high = wilson_interval(sum(values), count)
    else:
        variance = sum((v - mean) ** 2 for v in values) / (count - 1) if count > 1 else 0.0
        half = Z95 * math.sqrt(variance / count)
        low, high = mean - half, mean + half
        if all(0.0 <= v <= 1.0 for v in values):
            low, high = max(0.0, low), min(1.0, high)
    return EvalScore(value=mean, count=count, low=low, high=high)
