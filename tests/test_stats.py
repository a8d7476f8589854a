"""visattn.stats: the Student-t distribution against printed tables, the paired t-test and its verdict rule."""

import math

import pytest

from visattn.stats import (
    MIN_SEEDS,
    paired_differences,
    paired_t_test,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_quantile,
)

# Two-sided critical values from a printed t table: P(T <= t) = q.
T_TABLE = [  # (df, q, t)
    (1, 0.975, 12.706), (2, 0.975, 4.303), (3, 0.975, 3.182), (4, 0.95, 2.132), (5, 0.95, 2.015),
    (9, 0.995, 3.250), (10, 0.975, 2.228), (20, 0.99, 2.528), (30, 0.975, 2.042), (120, 0.975, 1.980),
]


@pytest.mark.parametrize(("df", "q", "t"), T_TABLE)
def test_student_t_cdf_and_quantile_match_the_printed_table(df, q, t):
    assert student_t_cdf(t, df) == pytest.approx(q, abs=2e-4)
    assert student_t_cdf(-t, df) == pytest.approx(1 - q, abs=2e-4)
    assert student_t_quantile(q, df) == pytest.approx(t, abs=1e-3)


def test_student_t_closed_forms():
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t) / pi; df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    for t in (-3.0, -0.5, 0.0, 0.25, 1.0, 7.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert student_t_cdf(math.inf, 3) == 1.0 and student_t_cdf(-math.inf, 3) == 0.0
    assert student_t_cdf(1.96, 1e6) == pytest.approx(0.975, abs=1e-4)  # the normal limit


def test_incomplete_beta_closed_forms():
    for x in (0.0, 0.1, 0.37, 0.5, 0.93, 1.0):
        assert regularized_incomplete_beta(x, 1, 1) == pytest.approx(x, abs=1e-12)
        assert regularized_incomplete_beta(x, 3, 1) == pytest.approx(x ** 3, abs=1e-12)
        assert regularized_incomplete_beta(x, 1, 2.5) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-12)
    assert regularized_incomplete_beta(0.5, 7.5, 7.5) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="x must be in"):
        regularized_incomplete_beta(1.5, 1, 1)
    with pytest.raises(ValueError, match="positive"):
        regularized_incomplete_beta(0.5, 0, 1)


def test_paired_t_test_against_a_hand_computation():
    diffs = [1.0, 2.0, 4.0]  # mean 7/3, std sqrt(7/3), t = mean / (std / sqrt(3)) = sqrt(7)
    test = paired_t_test(diffs)
    assert test.n == 3 and test.df == 2
    assert test.mean == pytest.approx(7 / 3) and test.std == pytest.approx(math.sqrt(7 / 3))
    assert test.t == pytest.approx(math.sqrt(7))
    # two-sided p for df = 2 in closed form: 1 - t / sqrt(2 + t^2)
    assert test.p == pytest.approx(1 - math.sqrt(7) / 3, abs=1e-12)
    assert test.verdict == "level"  # p = 0.118: not beyond the noise of three seeds
    assert test.describe() == ("+2.33 ± 1.53 points over 3 seeds, t = 2.65, p = 0.118 (paired t-test, two-sided): "
                               "level at the 5% level")


def test_verdicts_ahead_behind_level_at_the_stated_level():
    assert paired_t_test([3.0, 3.1, 2.9]).verdict == "ahead"
    assert paired_t_test([-3.0, -3.1, -2.9]).verdict == "behind"
    assert paired_t_test([1.0, -1.0, 0.5]).verdict == "level"
    ahead = paired_t_test([1.0, 2.0, 4.0], alpha=0.2)  # p = 0.118 < 0.2
    assert ahead.verdict == "ahead" and ahead.describe().endswith("ahead at the 20% level")
    same = paired_t_test([3.0, 3.0, 3.0])  # no noise at all: certain
    assert same.verdict == "ahead" and same.p == 0.0 and same.std == 0.0
    assert paired_t_test([0.0, 0.0, 0.0]).verdict == "level"


@pytest.mark.parametrize("diffs", [[9.5], [9.5, 10.0], [0.55 + 0.1, 0.55 - 0.1]])
def test_no_verdict_below_three_seeds(diffs):
    test = paired_t_test(diffs)
    assert MIN_SEEDS == 3 and test.verdict == "too few seeds"
    text = test.describe()
    assert "too few seeds for a verdict (3 needed)" in text
    assert "ahead" not in text and "behind" not in text and "level" not in text
    assert test.cell().startswith("- (")


def test_the_demo_case_of_the_issue_gets_no_verdict_from_two_seeds():
    # make demo printed "stn: +0.55 ± 0.14 points, ahead beyond the seed spread" from two seeds
    assert paired_t_test([0.45, 0.65]).describe() == "+0.55 ± 0.14 points over 2 seeds: too few seeds for a " \
        "verdict (3 needed)"


def test_interval_and_bad_input():
    low, high = paired_t_test([1.0, 2.0, 4.0]).interval(0.95)
    half = 4.302653 * math.sqrt(7 / 3) / math.sqrt(3)
    assert low == pytest.approx(7 / 3 - half, abs=1e-5) and high == pytest.approx(7 / 3 + half, abs=1e-5)
    with pytest.raises(ValueError, match="no differences"):
        paired_t_test([])
    with pytest.raises(ValueError, match="non-finite"):
        paired_t_test([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="alpha"):
        paired_t_test([1.0, 2.0, 3.0], alpha=5)


def test_paired_differences_pair_by_seed():
    assert paired_differences({"0": 5.0, "1": 7.0, "2": 1.0}, {"1": 6.0, "0": 4.5, "9": 0.0}) == [0.5, 1.0]
