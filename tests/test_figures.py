"""The evaluation figures: each builds from small synthetic arrays, saves as a real PNG, and has
the expected panels; edge cases (empty inputs, NaN, absent classes, bad labels) stay graceful."""

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest

from neds_framework.engine import figures as F

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")


def saved_png(fig, tmp_path, name="fig.png"):
    path = F.save_png(fig, tmp_path / name)
    assert path == tmp_path / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return path


def axes_with_lines(fig):
    return [ax for ax in fig.axes if any(len(line.get_xdata()) for line in ax.get_lines())]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_module_never_imports_pyplot():
    # Checked on the source, not sys.modules: other code in the same process (torch's
    # TensorBoard writer) may import pyplot itself.
    tree = ast.parse(Path(F.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert imported and not [name for name in imported if "pyplot" in name]


# ------------------------------------------------------------------------------ save_png
def test_save_png_creates_parents_and_leaves_no_temp(tmp_path):
    fig = F.behaviour_traces("wheel", np.zeros((0, 5)), np.zeros((0, 5)), 0.02)  # quick to draw
    target = tmp_path / "a" / "b" / "bps.png"
    assert F.save_png(fig, target) == target
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in target.parent.iterdir()] == ["bps.png"]
    # Overwriting keeps one complete file and no leftovers.
    F.save_png(fig, str(target))
    assert [p.name for p in target.parent.iterdir()] == ["bps.png"]


def test_returned_figure_renders_for_tensorboard(rng):
    fig = F.behaviour_traces("wheel", rng.normal(size=(5, 20)), rng.normal(size=(5, 20)), 0.02, n_trials=1)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())
    assert image.ndim == 3 and image.shape[2] == 4 and image.shape[0] > 10 and image.shape[1] > 10


# ------------------------------------------------------------------------------ training curves
def test_training_curves_full_history(tmp_path, rng):
    n = 120
    step = {
        "loss": list(rng.normal(2, 0.3, n)),
        "loss_spike": list(rng.normal(1, 0.2, n)),
        "loss_wheel": [NAN] * 10 + list(rng.normal(0.5, 0.1, n - 10)),  # NaN-padded: appeared late
        "loss_empty": [NAN] * n,  # all NaN: skipped
        "lr": list(np.linspace(0, 1e-3, n)),
        "step": list(range(n)),
    }
    epoch = {
        "epoch": [0.0, 1.0, 2.0, 3.0],
        "train_loss": [2.0, 1.5, 1.2, 1.1],
        "val_loss": [NAN, 1.6, NAN, 1.3],  # validation every other epoch
        "val_encoding_loss": [NAN, 0.9, NAN, 0.7],
        "val_never_loss": [NAN] * 4,
        "trials_per_s": [10.0] * 4,
    }
    fig = F.training_curves({"step": step, "epoch": epoch})
    saved_png(fig, tmp_path)
    assert len(fig.axes) == 3
    loss_ax, lr_ax, epoch_ax = fig.axes
    # raw loss + its running mean + two modality means; the all-NaN column is not drawn
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert len(labels) == 4 and "loss empty" not in labels
    assert np.allclose(lr_ax.get_lines()[0].get_ydata(), step["lr"])
    epoch_lines = {line.get_label(): line for line in epoch_ax.get_lines()}
    assert set(epoch_lines) == {"train_loss", "val_loss", "val_encoding_loss"}
    assert list(epoch_lines["train_loss"].get_xdata()) == [1, 2, 3, 4]
    assert list(epoch_lines["val_loss"].get_xdata()) == [2, 4]


def test_training_curves_epoch_only_without_epoch_column():
    fig = F.training_curves({"step": {}, "epoch": {"train_loss": [3.0, 2.0, 1.0]}})
    assert len(axes_with_lines(fig)) == 1
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1, 2, 3]


def test_training_curves_running_mean_ignores_nan():
    values = np.array([1.0, NAN, 3.0, 5.0, NAN])
    assert np.allclose(F._running_mean(values, 2), [1.0, 1.0, 3.0, 4.0, 5.0])
    assert np.isnan(F._running_mean(np.array([NAN, NAN]), 1)).all()


@pytest.mark.parametrize(
    "history",
    [{}, {"step": {}, "epoch": {}}, {"step": {"loss": []}, "epoch": {"train_loss": [NAN, NAN]}}],
)
def test_training_curves_empty_is_none(history):
    assert F.training_curves(history) is None


# ------------------------------------------------------------------------------ behaviour traces
def test_behaviour_traces_spreads_trials(tmp_path, rng):
    target = rng.normal(size=(10, 25))
    prediction = target + rng.normal(scale=0.3, size=target.shape)
    fig = F.behaviour_traces("wheel-speed", prediction, target, bin_size=0.02, n_trials=3, r2=0.812)
    saved_png(fig, tmp_path)
    axes = axes_with_lines(fig)
    assert len(axes) == 3
    assert [ax.get_ylabel() for ax in axes] == ["trial 0", "trial 4", "trial 9"]
    target_line = axes[1].get_lines()[0]
    assert np.allclose(target_line.get_ydata(), target[4])
    assert np.allclose(target_line.get_xdata(), np.arange(25) * 0.02)
    title = fig.get_suptitle()
    assert "wheel-speed" in title and "0.812" in title


def test_behaviour_traces_fewer_trials_than_asked(rng):
    fig = F.behaviour_traces("whisker", rng.normal(size=(2, 8)), rng.normal(size=(2, 8)), 0.02, n_trials=4)
    assert len(axes_with_lines(fig)) == 2
    assert "R²" not in fig.get_suptitle()


def test_behaviour_traces_no_trials(tmp_path):
    fig = F.behaviour_traces("wheel", np.zeros((0, 10)), np.zeros((0, 10)), 0.02)
    saved_png(fig, tmp_path)
    assert fig.axes == []
    assert [t.get_text() for t in fig.texts] == ["wheel\nno trials"]


def test_behaviour_traces_shape_mismatch():
    with pytest.raises(ValueError, match="must both be"):
        F.behaviour_traces("wheel", np.zeros((3, 10)), np.zeros((3, 9)), 0.02)


# ------------------------------------------------------------------------------ PSTHs
def psth_data(rng, k=12, t=20, n=10):
    rates = rng.uniform(0.1, 2.0, size=(k, t, n))
    counts = rng.poisson(rates).astype(np.float64)
    return rates, counts


def test_psth_panels_top_scores_skip_nan(tmp_path, rng):
    rates, counts = psth_data(rng)
    scores = np.linspace(0.0, 0.9, 10)
    scores[[9, 7]] = np.nan  # the highest would-be scores are NaN: never chosen
    fig = F.psth_panels(rates, counts, bin_size=0.02, scores=scores, truth=rates, top=3)
    saved_png(fig, tmp_path)
    axes = axes_with_lines(fig)
    assert len(axes) == 3
    titles = [ax.get_title() for ax in axes]
    assert titles == ["neuron 8 (score 0.800)", "neuron 6 (score 0.600)", "neuron 5 (score 0.500)"]
    # observed, predicted, true for one group; rates are in Hz
    lines = axes[0].get_lines()
    assert len(lines) == 3
    assert np.allclose(lines[0].get_ydata(), counts[:, :, 8].mean(axis=0) / 0.02)
    assert np.allclose(lines[1].get_ydata(), rates[:, :, 8].mean(axis=0) / 0.02)


def test_psth_panels_fewer_finite_scores_than_top(rng):
    rates, counts = psth_data(rng, n=5)
    scores = np.array([np.nan, 0.2, np.nan, 0.1, np.nan])
    fig = F.psth_panels(rates, counts, 0.02, scores=scores, top=4)
    assert [ax.get_title() for ax in fig.axes] == ["neuron 1 (score 0.200)", "neuron 3 (score 0.100)"]


@pytest.mark.parametrize("scores", [None, np.full(10, np.nan)])
def test_psth_panels_falls_back_to_mean_count(rng, scores):
    rates, counts = psth_data(rng)
    counts[:, :, 4] += 5  # clearly the most active neuron
    fig = F.psth_panels(rates, counts, 0.02, scores=scores, top=2)
    assert len(axes_with_lines(fig)) == 2
    assert fig.axes[0].get_title().startswith("neuron 4 (mean count")


def test_psth_panels_conditions(rng):
    k = 30
    rates, counts = psth_data(rng, k=k)
    # six labels; only the four most frequent get curves
    labels = np.repeat([0, 1, 2, 3, 4, 5], [8, 7, 6, 5, 3, 1])
    fig = F.psth_panels(rates, counts, 0.02, scores=rng.normal(size=10), conditions=labels, top=4)
    assert len(axes_with_lines(fig)) == 4
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4 * 2  # observed + predicted per condition
    assert lines[0].get_color() == lines[1].get_color()
    assert lines[0].get_linestyle() == "-" and lines[1].get_linestyle() == "--"
    assert len({line.get_color() for line in lines}) == 4
    # the first condition (label 0, trials 0..7) is averaged on its own
    neuron = int(fig.axes[0].get_title().split()[1])
    assert np.allclose(lines[0].get_ydata(), counts[:8, :, neuron].mean(axis=0) / 0.02)

    rows = np.stack([labels % 2, labels // 2], axis=1)  # (K, 2) condition rows
    fig = F.psth_panels(rates, counts, 0.02, conditions=rows, top=2)
    assert len(fig.axes[0].get_lines()) == 4 * 2


def test_psth_panels_nan_truth_trials(rng):
    rates, counts = psth_data(rng)
    truth = rates.copy()
    truth[:3] = np.nan  # the simulator leaves NaN rows for trials it could not time
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = F.psth_panels(rates, counts, 0.02, truth=truth, top=1)
    true_line = fig.axes[0].get_lines()[2]
    neuron = int(fig.axes[0].get_title().split()[1])
    assert np.allclose(true_line.get_ydata(), rates[3:, :, neuron].mean(axis=0) / 0.02)


@pytest.mark.parametrize("shape", [(0, 10, 5), (4, 10, 0)])
def test_psth_panels_empty(tmp_path, shape):
    fig = F.psth_panels(np.zeros(shape), np.zeros(shape), 0.02)
    if shape[0] == 0:
        saved_png(fig, tmp_path)
    assert fig.axes == [] and len(fig.texts) == 1
    assert fig.texts[0].get_text().endswith("no trials" if shape[0] == 0 else "no neurons")


# ------------------------------------------------------------------------------ confusion matrix
def test_confusion_matrix_counts_and_absent_class(tmp_path):
    target = np.array([0, 0, 1, 1, 1, 0])  # class 2 never occurs
    predicted = np.array([0, 1, 1, 1, 2, 0])
    fig = F.confusion_matrix("choice", predicted, target, 3, class_names=["left", "right", "none"])
    saved_png(fig, tmp_path)
    assert len(fig.axes) == 2  # the matrix and its colour bar
    ax = fig.axes[0]
    expected = np.array([[2, 1, 0], [0, 2, 1], [0, 0, 0]])
    assert np.array_equal(ax.get_images()[0].get_array(), expected)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9
    assert texts[0] == "2\n67%" and texts[8] == "0\n–"
    assert "choice" in ax.get_title() and "0.667" in ax.get_title()


def test_confusion_matrix_matches_loop(rng):
    target = rng.integers(0, 4, size=200)
    predicted = rng.integers(0, 4, size=200).astype(np.float64)  # whole floats are accepted
    fig = F.confusion_matrix("block", predicted, target, 4)
    expected = np.zeros((4, 4), dtype=int)
    for t, p in zip(target, predicted.astype(int)):
        expected[t, p] += 1
    assert np.array_equal(fig.axes[0].get_images()[0].get_array(), expected)


@pytest.mark.parametrize(
    "predicted, target, match",
    [
        ([0, 1, 3], [0, 1, 2], "predicted label 3 is outside 0..2"),
        ([0, 1, 2], [0, -1, 2], "target label -1 is outside 0..2"),
        ([0, 1.5, 2], [0, 1, 2], "whole numbers"),
        ([0, 1], [0, 1, 2], "2 predicted labels but 3 targets"),
    ],
)
def test_confusion_matrix_bad_labels(predicted, target, match):
    with pytest.raises(ValueError, match=match) as info:
        F.confusion_matrix("choice", np.array(predicted), np.array(target), 3)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ bits per spike
def test_bps_histogram_with_oracle(tmp_path, rng):
    oracle = rng.normal(0.5, 0.2, size=40)
    bps = oracle - rng.uniform(0, 0.2, size=40)
    bps[:3] = np.nan
    fig = F.bps_histogram(bps, oracle)
    saved_png(fig, tmp_path)
    assert len(fig.axes) == 2
    hist_ax, scatter_ax = fig.axes
    assert len(hist_ax.patches) > 0
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "model (37 neurons, 3 NaN dropped)" in legend
    assert f"model mean {np.nanmean(bps):.3f}" in legend
    assert f"oracle mean {oracle.mean():.3f}" in legend
    assert scatter_ax.collections[0].get_offsets().shape == (37, 2)
    assert len(scatter_ax.get_lines()) == 1  # y = x


def test_bps_histogram_model_only(rng):
    fig = F.bps_histogram(rng.normal(size=25))
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) > 0


def test_bps_histogram_all_nan(tmp_path):
    fig = F.bps_histogram(np.full(7, np.nan), np.full(7, np.nan))
    saved_png(fig, tmp_path)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "model (0 neurons, 7 NaN dropped)" in legend
    assert len(fig.axes[0].patches) == 0


def test_bps_histogram_length_mismatch():
    with pytest.raises(ValueError, match="oracle has 3 neurons but bps has 4"):
        F.bps_histogram(np.zeros(4), np.zeros(3))
