"""Bootstrap intervals (reports/uncertainty.py) on samples with a known answer."""

from __future__ import annotations

import math

import pytest

from tlprof.reports.uncertainty import (
    MIN_SAMPLES,
    Interval,
    bootstrap,
    columns_ci,
    diff_ci,
    median_ci,
    ratio_ci,
    step_totals,
)

STEADY = [9.0, 9.5, 10.0, 10.5, 11.0, 10.2, 9.8]


def test_identical_samples_give_a_ratio_ci_around_one():
    ci = ratio_ci(STEADY, STEADY)
    assert ci.value == 1.0 and ci.contains(1.0)
    assert ci.low < 1.0 < ci.high  # resampled independently: each side has its own noise
    assert (ci.n_a, ci.n_b, ci.n) == (7, 7, 7)


def test_well_separated_samples_exclude_the_other_value():
    frozen = [4.0, 4.1, 3.9, 4.0, 4.05]
    full = [10.0, 10.2, 9.9, 10.1, 10.0]
    ci = ratio_ci(frozen, full)
    assert ci.value == pytest.approx(0.4)
    assert 0.38 < ci.low <= ci.value <= ci.high < 0.42
    assert ci.outside(0.5, 0.6) and not ci.within(0.5, 0.6)
    assert ci.within(0.35, 0.45)


def test_the_same_samples_always_give_the_same_interval():
    noisy = [1.0, 5.0, 2.0, 8.0, 3.0, 9.0]
    assert ratio_ci(noisy, STEADY) == ratio_ci(noisy, STEADY)
    assert ratio_ci(noisy, STEADY, seed=1) != ratio_ci(noisy, STEADY)


def test_one_sample_is_a_point_and_counts_one():
    ci = ratio_ci([3.0], [6.0])
    assert (ci.low, ci.value, ci.high, ci.n) == (0.5, 0.5, 0.5, 1)
    assert ci.n < MIN_SAMPLES


@pytest.mark.parametrize("a, b", [([], [1.0]), ([1.0], []), ([math.nan, 1.0], [1.0]), ([1.0], [math.inf])])
def test_missing_or_nan_samples_give_no_interval(a, b):
    ci = ratio_ci(a, b)
    assert not ci.finite and not ci.contains(1.0) and not ci.outside(0, 0.5)


def test_a_zero_denominator_is_unbounded_not_a_number():
    ci = ratio_ci([1.0, 1.0], [0.0, 0.0])
    assert math.isinf(ci.value) and not ci.finite


def test_difference_of_medians():
    same = diff_ci(STEADY, list(reversed(STEADY)))
    assert same.value == 0.0 and same.contains(0.0)
    slower = diff_ci(STEADY, [x + 5 for x in STEADY])
    assert slower.value == pytest.approx(5.0) and not slower.contains(0.0) and slower.low > 3


def test_median_ci_brackets_the_median():
    ci = median_ci([1.0, 2.0, 3.0, 4.0, 100.0])
    assert ci.value == 3.0 and ci.low >= 1.0 and ci.high <= 100.0 and ci.contains(3.0)


def test_columns_are_resampled_by_the_same_steps():
    # two units whose t moves together step by step: their ratio is exactly 2 in every resample
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    ci = columns_ci([a, [2 * x for x in a]], lambda meds: meds[1] / meds[0])
    assert (ci.low, ci.value, ci.high) == (2.0, 2.0, 2.0)


def test_bootstrap_of_one_side_and_step_totals():
    ci = bootstrap([[2.0] * 5], [], lambda ma, _: ma[0] * 3)
    assert (ci.low, ci.value, ci.high, ci.n_b) == (6.0, 6.0, 6.0, 0)
    assert step_totals([[1.0, 2.0], [10.0, 20.0]]) == [11.0, 22.0]
    assert step_totals([[1.0, 2.0], [10.0]]) is None


def test_interval_text_and_mapping():
    ci = Interval(0.41, 0.425, 0.44, 10, 10)
    assert ci.text(lambda x: f"{x:.3g}") == "0.425 [0.41, 0.44], 95% CI, n = 10/10"
    doubled = ci.map(lambda x: 2 * x)
    assert (doubled.low, doubled.value, doubled.high) == (0.82, 0.85, 0.88)
    assert ci.overlaps(Interval(0.43, 0.5, 0.6, 5, 5)) and not ci.overlaps(Interval(0.45, 0.5, 0.6, 5, 5))
