"""The region probe's classifiers: a region made of rows with opposite signs is still found."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.region_probe import probe_accuracy


def _mixed_sign_regions(rng, n=120, dim=6):
    """Two regions, each tuned to its own direction, with every neuron's sign drawn at random
    (mixed preferences): no linear boundary separates them."""
    directions = np.eye(dim)[:2] * 3.0
    region = rng.integers(0, 2, n)
    sign = rng.choice([-1.0, 1.0], n)
    x = directions[region] * sign[:, None] + rng.normal(0, 0.3, (n, dim))
    return x, np.array(["VISa", "CA1"])[region]


def test_mixed_preferences_need_the_forest():
    x, y = _mixed_sign_regions(np.random.default_rng(0))
    got = probe_accuracy(x, y)
    assert got["accuracy"] > 0.9
    assert got["accuracy_linear"] < 0.75
    assert got["regions"] == 2 and got["neurons"] == 120
    assert got["chance"] == pytest.approx(max(np.mean(y == "VISa"), np.mean(y == "CA1")))


def test_labels_unrelated_to_the_rows_score_near_chance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(150, 6)), rng.choice(["VISa", "CA1", "LP"], 150)
    got = probe_accuracy(x, y)
    assert got["accuracy"] < got["chance"] + 0.15 and got["accuracy_linear"] < got["chance"] + 0.15


def test_small_regions_are_left_out_and_one_region_is_no_probe():
    x, y = _mixed_sign_regions(np.random.default_rng(2), n=40)
    y[:3] = "DG"  # 3 neurons: under min_neurons
    got = probe_accuracy(x, y, min_neurons=5)
    assert got["neurons"] == 37 and got["regions"] == 2
    lone = probe_accuracy(x[y == "VISa"], y[y == "VISa"])
    assert lone["regions"] == 1 and math.isnan(lone["accuracy"]) and math.isnan(lone["accuracy_linear"])
