"""Is one network ahead of another? A paired t-test over per-seed differences, with the standard library only.

Two runs with the same seed see the same data order and the same initial weights, so the difference of their
scores is one paired sample; over ``n`` seeds, the paired t-test asks whether the mean difference is beyond
what the seed-to-seed noise explains. visattn's rule (compare's leaderboards, the demo's summary and
``benchmarks/budget_sweep.py`` all use it):

- below :data:`MIN_SEEDS` (3) paired seeds there is no verdict: "too few seeds for a verdict";
- otherwise the verdict is ``"ahead"`` / ``"behind"`` when the two-sided paired t-test rejects "no
  difference" at level :data:`ALPHA` (5%), and ``"level"`` when it does not.

The Student-t distribution function comes from the regularised incomplete beta function (Numerical Recipes'
continued fraction, evaluated with the modified Lentz method), checked against printed t tables in the tests.

Example:
    >>> test = paired_t_test([0.4, 0.7, 0.5, 0.6])
    >>> test.verdict, round(test.t, 2), round(test.p, 4)
    ('ahead', 8.52, 0.0034)
    >>> test.describe()
    '+0.55 ± 0.13 points over 4 seeds, t = 8.52, p = 0.003 (paired t-test, two-sided): ahead at the 5% level'
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ALPHA", "MIN_SEEDS", "VERDICTS", "PairedTest", "paired_t_test", "paired_differences",
           "regularized_incomplete_beta", "student_t_cdf", "student_t_quantile", "format_p"]

#: The test's level: a difference is a verdict when its two-sided p-value is below this.
ALPHA = 0.05
#: Fewest paired seeds that get a verdict.
MIN_SEEDS = 3
#: What :attr:`PairedTest.verdict` can be.
VERDICTS = ("ahead", "behind", "level", "too few seeds")

_EPS = 1e-15
_TINY = 1e-300


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes 6.4), by the modified Lentz method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for x={x}, a={a}, b={b}")


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b), the distribution function of a Beta(a, b) variable at ``x``.

    Args:
        x: in [0, 1].
        a: positive.
        b: positive.

    Raises:
        ValueError: ``x`` outside [0, 1] or a non-positive ``a`` / ``b``.
    """
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"regularized_incomplete_beta: x must be in [0, 1], got {x}")
    if not (a > 0 and b > 0):
        raise ValueError(f"regularized_incomplete_beta: a and b must be positive, got a={a}, b={b}")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast here
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b  # symmetry I_x(a, b) = 1 - I_{1-x}(b, a)


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (``t`` may be +-inf).

    Raises:
        ValueError: ``df`` not positive or ``t`` NaN.
    """
    if not df > 0:
        raise ValueError(f"student_t_cdf: degrees of freedom must be positive, got {df}")
    if math.isnan(t):
        raise ValueError("student_t_cdf: t is NaN")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(q: float, df: float) -> float:
    """The ``t`` with P(T <= t) = ``q`` (bisection on :func:`student_t_cdf`; exact to ~1e-12).

    Raises:
        ValueError: ``q`` not strictly between 0 and 1.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"student_t_quantile: q must be in (0, 1), got {q}")
    if q == 0.5:
        return 0.0
    lo, hi = -1.0, 1.0
    while student_t_cdf(lo, df) > q:
        lo *= 2
    while student_t_cdf(hi, df) < q:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


def format_p(p: float) -> str:
    """``"p = 0.021"``, or ``"p < 0.001"`` for smaller p-values."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of per-seed differences (a minus b) against zero.

    Attributes:
        n: paired seeds.
        mean: mean difference.
        std: sample standard deviation of the differences (NaN for one seed).
        t: the t statistic mean / (std / sqrt(n)) (NaN below two seeds; +-inf for equal non-zero differences).
        p: two-sided p-value (NaN below two seeds).
        df: degrees of freedom, n - 1.
        alpha: the level of the test.
        verdict: one of :data:`VERDICTS`.
    """

    n: int
    mean: float
    std: float
    t: float
    p: float
    df: int
    alpha: float
    verdict: str

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """The t confidence interval of the mean difference (NaN bounds below two seeds)."""
        if self.n < 2:
            return float("nan"), float("nan")
        half = student_t_quantile(0.5 + confidence / 2, self.df) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def describe(self, unit: str = "points") -> str:
        """One line: mean ± std, n, t and p, and the verdict with its test and level (or why there is none).

        ``"+0.55 ± 0.13 points over 4 seeds, t = 8.52, p = 0.003 (paired t-test, two-sided): ahead at the 5%
        level"``; ``"+0.55 ± 0.14 points over 2 seeds: too few seeds for a verdict (3 needed)"``.
        """
        spread = f" ± {self.std:.2f}" if self.n > 1 else ""
        seeds = f"{self.n} seed" + ("s" if self.n != 1 else "")
        head = f"{self.mean:+.2f}{spread} {unit} over {seeds}"
        if self.verdict == "too few seeds":
            return f"{head}: too few seeds for a verdict ({MIN_SEEDS} needed)"
        return (f"{head}, t = {self.t:.2f}, {format_p(self.p)} (paired t-test, two-sided): {self.verdict} at the "
                f"{self.alpha:.0%} level")

    def cell(self) -> str:
        """Short form for a table cell: ``"ahead (p = 0.003)"``, ``"level (p = 0.41)"``, ``"- (2 seeds)"``."""
        if self.verdict == "too few seeds":
            return f"- ({self.n} seed{'s' if self.n != 1 else ''})"
        return f"{self.verdict} ({format_p(self.p)})"


def paired_t_test(differences: Sequence[float], *, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS) -> PairedTest:
    """The paired t-test of per-seed ``differences`` against zero, and visattn's verdict.

    Args:
        differences: score of a minus score of b, one per seed (paired by seed).
        alpha: the test's level (two-sided).
        min_seeds: fewest differences that get a verdict (:data:`MIN_SEEDS`).

    Returns:
        :class:`PairedTest`; its ``verdict`` is ``"too few seeds"`` below ``min_seeds``, else ``"ahead"`` /
        ``"behind"`` when ``p < alpha`` (by the sign of the mean) and ``"level"`` otherwise.

    Raises:
        ValueError: no differences, a non-finite one, or ``alpha`` outside (0, 1).
    """
    values = [float(d) for d in differences]
    if not values:
        raise ValueError("paired_t_test: no differences (no seed in common)")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"paired_t_test: non-finite differences {values}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"paired_t_test: alpha must be in (0, 1), got {alpha}")
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        t = p = std = float("nan")
    else:
        std = statistics.stdev(values)
        if std > 1e-12 * max(1.0, abs(mean)):
            t = mean / (std / math.sqrt(n))
            p = 2.0 * (1.0 - student_t_cdf(abs(t), n - 1))
        else:  # every seed gave the same difference: no noise at all
            std = 0.0
            t = math.copysign(math.inf, mean) if mean != 0 else float("nan")
            p = 0.0 if mean != 0 else 1.0
    if n < min_seeds:
        verdict = "too few seeds"
    elif p < alpha:
        verdict = "ahead" if mean > 0 else "behind"
    else:
        verdict = "level"
    return PairedTest(n=n, mean=mean, std=std, t=t, p=p, df=n - 1, alpha=alpha, verdict=verdict)


def paired_differences(a: dict[str, float], b: dict[str, float]) -> list[float]:
    """``a[s] - b[s]`` for every seed ``s`` both have, in seed order (per-seed scores keyed by seed)."""
    common = sorted(set(a) & set(b), key=lambda s: (len(str(s)), str(s)))
    return [a[s] - b[s] for s in common]
