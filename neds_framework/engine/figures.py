"""The evaluation figures of a run, as pure functions of numpy arrays.

They are what a person looks at to judge a run at a glance, beside the numbers in `run.h5`:
whether training converged (`training_curves`), whether decoded behaviour follows the real one
(`behaviour_traces`), whether predicted firing rates follow the observed PSTHs (`psth_panels`),
which classes a static decoder confuses (`confusion_matrix`), and how bits per spike spread over
neurons, against an oracle when the data are simulated (`bps_histogram`).

Every plotting function takes plain arrays, returns a `matplotlib.figure.Figure` with an Agg
canvas attached, and touches no global state: pyplot is never imported, so no GUI backend is
chosen, no figure manager keeps figures alive, and figures can be drawn from any thread. The
caller either writes the figure with `save_png` or hands it to TensorBoard's
`SummaryWriter.add_figure`, which needs exactly what the Agg canvas gives: `draw()` and
`buffer_rgba()`. All averaging is vectorised; the only Python loops are over a handful of panels
or curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from neds_framework.atomic import atomic_path

PNG_DPI = 110
#: At most this many conditions get their own PSTH curves; more would be unreadable.
MAX_CONDITIONS = 4
#: Beyond this many classes the per-cell count/fraction labels overlap, so they are left out.
MAX_ANNOTATED_CLASSES = 20


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _message_figure(text: str, title: str | None = None) -> Figure:
    """A figure with no axes and one line of text, for inputs with nothing to plot: the caller
    still gets a figure to save or log, so an empty split never breaks an evaluation."""
    fig = new_figure(5.0, 2.0)
    fig.text(0.5, 0.5, f"{title}\n{text}" if title else text, ha="center", va="center", fontsize=12)
    return fig


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write `figure` as a PNG at `path` (110 dpi), creating parent folders. The file is written
    under a temporary name beside `path` and renamed onto it, so a reader never sees a truncated
    image; the format is given explicitly because the temporary name does not end in `.png`.
    Returns the final path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=PNG_DPI, format="png")
    return path


def _column(table: Mapping[str, Sequence[float]], key: str) -> np.ndarray | None:
    """The column as float64, or None when it is absent or has no finite value."""
    if key not in table:
        return None
    values = np.asarray(table[key], dtype=np.float64).reshape(-1)
    return values if np.isfinite(values).any() else None


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` rows that ignores NaN (NaN where the window holds none);
    computed from cumulative sums so it costs O(n) whatever the window."""
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, values.size + 1)
    start = np.maximum(end - window, 0)
    n = counts[end] - counts[start]
    return np.divide(sums[end] - sums[start], n, out=np.full(values.size, np.nan), where=n > 0)


def _masked_group_mean(weights: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Mean over trials of `data` (K, T, M) for each row of the 0/1 matrix `weights` (C, K),
    skipping NaN entries (the simulator's truth has NaN trials); (C, T, M), NaN where a group
    has no finite value."""
    finite = np.isfinite(data)
    sums = np.einsum("ck,ktm->ctm", weights, np.where(finite, data, 0.0))
    counts = np.einsum("ck,ktm->ctm", weights, finite.astype(np.float64))
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


# --------------------------------------------------------------------------------------------
# training curves
# --------------------------------------------------------------------------------------------
def training_curves(history: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure | None:
    """The training history of a run (`RunRecord.history`: "step" and "epoch" tables of
    NaN-padded columns). Left: the per-step `loss` in a light colour with its running mean
    (window max(1, n // 50)) and the running means of the per-modality `loss_<modality>`
    columns, against the step row index; below it, when logged, the learning rate `lr`. Right:
    the epoch-level `train_loss` and every `val_*loss` column against the 1-based epoch number,
    each drawn through its finite values only (validation runs on some epochs only). All-NaN
    columns are skipped; returns None when neither table has anything to draw."""
    step = history.get("step") or {}
    epoch = history.get("epoch") or {}

    loss = _column(step, "loss")
    modalities = {
        key[len("loss_"):]: col
        for key in sorted(step)
        if key.startswith("loss_") and (col := _column(step, key)) is not None
    }
    lr = _column(step, "lr")
    epoch_keys = ["train_loss"] + sorted(k for k in epoch if k.startswith("val_") and k.endswith("loss"))
    epoch_cols = {k: col for k in epoch_keys if (col := _column(epoch, k)) is not None}

    left = (["loss"] if loss is not None or modalities else []) + (["lr"] if lr is not None else [])
    if not left and not epoch_cols:
        return None

    ncols = (1 if left else 0) + (1 if epoch_cols else 0)
    fig = new_figure(5.5 * ncols, 4.5)
    grid = fig.add_gridspec(
        max(len(left), 1), ncols, height_ratios=[3, 1] if len(left) == 2 else [1]
    )

    step_ax = None
    for row, kind in enumerate(left):
        ax = fig.add_subplot(grid[row, 0], sharex=step_ax)
        if kind == "loss":
            step_ax = ax
            if loss is not None:
                x = np.arange(loss.size)
                ax.plot(x, loss, color="C0", alpha=0.25, linewidth=0.8, label="loss")
                window = max(1, loss.size // 50)
                ax.plot(x, _running_mean(loss, window), color="C0", linewidth=1.6,
                        label=f"loss (mean of {window})")
            for i, (modality, col) in enumerate(modalities.items(), start=1):
                window = max(1, col.size // 50)
                ax.plot(np.arange(col.size), _running_mean(col, window), color=f"C{i}",
                        linewidth=1.2, label=f"loss {modality}")
            ax.set_ylabel("training loss")
            ax.set_title("per step")
            # A fixed corner: loc="best" scans every plotted point, slow on long histories.
            ax.legend(fontsize="small", loc="upper right")
        else:
            ax.plot(np.arange(lr.size), lr, color="C7", linewidth=1.2)
            ax.set_ylabel("learning rate")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            if step_ax is None:
                ax.set_title("per step")
        if row == len(left) - 1:
            ax.set_xlabel("step")
        elif kind == "loss":
            ax.tick_params(labelbottom=False)

    if epoch_cols:
        ax = fig.add_subplot(grid[:, -1])
        rows = max(col.size for col in epoch_cols.values())
        ep = np.full(rows, np.nan)
        if "epoch" in epoch:
            given = np.asarray(epoch["epoch"], dtype=np.float64).reshape(-1)[:rows]
            ep[: given.size] = given
        # The record stores the 0-based epoch that just ran; people count epochs from 1.
        x_all = np.where(np.isfinite(ep), ep + 1, np.arange(1, rows + 1))
        for i, (key, col) in enumerate(epoch_cols.items()):
            x = x_all[: col.size]
            keep = np.isfinite(col)
            ax.plot(x[keep], col[keep], "o-", color=f"C{i}", markersize=3, linewidth=1.4, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title("per epoch")
        ax.legend(fontsize="small", loc="upper right")
    return fig


# --------------------------------------------------------------------------------------------
# behaviour
# --------------------------------------------------------------------------------------------
def behaviour_traces(
    name: str,
    prediction: np.ndarray,
    target: np.ndarray,
    bin_size: float,
    n_trials: int = 4,
    r2: float | None = None,
) -> Figure:
    """Decoded against real dynamic behaviour (e.g. wheel speed) for a few trials. `prediction`
    and `target` are (K, T); one panel per shown trial, stacked with a shared time axis in
    seconds (bin index × `bin_size`), target in black and prediction in colour. The
    min(`n_trials`, K) trials are spread evenly over K rather than taken from the start, so
    they are not all from the same block of the session. The title carries `name` and `r2` when
    given. With no trial to show, the figure holds only the text "no trials"."""
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(
            f"behaviour_traces({name!r}): prediction {prediction.shape} and target {target.shape} "
            "must both be (trials, bins)"
        )
    title = name if r2 is None else f"{name}   R² = {r2:.3f}"
    k, t = target.shape
    shown = min(int(n_trials), k)
    if shown <= 0:
        return _message_figure("no trials", title)

    trials = np.linspace(0, k - 1, shown).round().astype(int)
    time = np.arange(t) * float(bin_size)
    fig = new_figure(7.0, 1.1 + 1.5 * shown)
    axes = fig.subplots(shown, 1, sharex=True, squeeze=False)[:, 0]
    for ax, trial in zip(axes, trials):
        ax.plot(time, target[trial], color="black", linewidth=1.3, label="target")
        ax.plot(time, prediction[trial], color="C1", linewidth=1.3, label="prediction")
        ax.set_ylabel(f"trial {trial}")
    # Below the panels: inside one it would hide part of that trial's trace.
    fig.legend(handles=axes[0].get_lines(), fontsize="small", loc="outside lower center", ncols=2)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# PSTHs
# --------------------------------------------------------------------------------------------
def _condition_groups(conditions: np.ndarray | None, k: int) -> tuple[np.ndarray, list[str]]:
    """0/1 weights (C, K) of the at most MAX_CONDITIONS most frequent conditions (all trials as
    one group when `conditions` is None), and their labels."""
    if conditions is None:
        return np.ones((1, k)), ["all trials"]
    conditions = np.asarray(conditions)
    if conditions.shape[:1] != (k,) or conditions.ndim > 2:
        raise ValueError(f"psth_panels: conditions {conditions.shape} must be ({k},) or ({k}, c)")
    if conditions.ndim == 1:
        values, inverse, counts = np.unique(conditions, return_inverse=True, return_counts=True)
        labels = [str(v) for v in values]
    else:
        values, inverse, counts = np.unique(conditions, axis=0, return_inverse=True, return_counts=True)
        labels = ["(" + ", ".join(str(x) for x in row) + ")" for row in values]
    # Stable sort keeps ties in label order, so the same data always gives the same colours.
    chosen = np.argsort(-counts, kind="stable")[:MAX_CONDITIONS]
    weights = (inverse.reshape(-1)[None, :] == chosen[:, None]).astype(np.float64)
    return weights, [f"{labels[c]} (n={counts[c]})" for c in chosen]


def psth_panels(
    prediction: np.ndarray,
    target: np.ndarray,
    bin_size: float,
    scores: np.ndarray | None = None,
    conditions: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    top: int = 6,
) -> Figure:
    """Trial-averaged firing rates (PSTHs, in Hz) of the best-predicted neurons. `prediction`
    (expected counts per bin), `target` (spike counts) and the optional `truth` (the simulator's
    expected counts) are (K, T, N). The `top` neurons with the highest finite `scores` (N,) are
    shown, one panel each, titled with the score; NaN scores are never picked, and without any
    finite score the neurons with the highest mean count are shown instead. Observed rates are
    solid, predicted dashed, true dotted; with `conditions` ((K,) labels or (K, c) rows) each of
    the at most four most frequent conditions is averaged separately and keeps one colour
    across panels. Empty inputs give a text-only figure."""
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if prediction.shape != target.shape or target.ndim != 3:
        raise ValueError(
            f"psth_panels: prediction {prediction.shape} and target {target.shape} must both be "
            "(trials, bins, neurons)"
        )
    if truth is not None:
        truth = np.asarray(truth, dtype=np.float64)
        if truth.shape != target.shape:
            raise ValueError(f"psth_panels: truth {truth.shape} must match target {target.shape}")
    k, t, n = target.shape
    if k == 0 or n == 0:
        return _message_figure("no trials" if k == 0 else "no neurons", "PSTHs")

    by_score = False
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"psth_panels: scores {scores.shape} must be ({n},)")
        by_score = bool(np.isfinite(scores).any())
    if by_score:
        rank_by = np.where(np.isfinite(scores), scores, -np.inf)
        eligible = int(np.isfinite(scores).sum())
    else:
        finite = np.isfinite(target)
        counted = finite.sum(axis=(0, 1))
        mean_count = np.divide(np.where(finite, target, 0.0).sum(axis=(0, 1)), counted,
                               out=np.full(n, -np.inf), where=counted > 0)
        rank_by, eligible = mean_count, int((counted > 0).sum())
    neurons = np.argsort(-rank_by, kind="stable")[: max(0, min(int(top), eligible))]
    if neurons.size == 0:
        return _message_figure("no neuron to show", "PSTHs")

    weights, labels = _condition_groups(conditions, k)
    # Selecting the shown neurons first keeps the averaging cost at top·K·T, not N·K·T.
    to_hz = 1.0 / float(bin_size)
    observed = _masked_group_mean(weights, target[:, :, neurons]) * to_hz
    predicted = _masked_group_mean(weights, prediction[:, :, neurons]) * to_hz
    true_rate = None if truth is None else _masked_group_mean(weights, truth[:, :, neurons]) * to_hz

    single = conditions is None
    colors = [f"C{i}" for i in range(len(labels))]
    time = np.arange(t) * float(bin_size)
    ncols = min(3, neurons.size)
    nrows = -(-neurons.size // ncols)
    fig = new_figure(4.0 * ncols + 1.8, 0.6 + 2.8 * nrows)  # + room for the legend on the right
    grid = fig.add_gridspec(nrows, ncols)
    for i, neuron in enumerate(neurons):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        # One colour per condition; without conditions, colours tell observed from predicted.
        obs_colors = ["black"] if single else colors
        pred_colors = ["C3"] if single else colors
        true_colors = ["C2"] if single else colors
        for c in range(len(labels)):
            ax.plot(time, observed[c, :, i], color=obs_colors[c], linestyle="-", linewidth=1.3)
            ax.plot(time, predicted[c, :, i], color=pred_colors[c], linestyle="--", linewidth=1.3)
            if true_rate is not None:
                ax.plot(time, true_rate[c, :, i], color=true_colors[c], linestyle=":", linewidth=1.3)
        value = scores[neuron] if by_score else rank_by[neuron]
        ax.set_title(f"neuron {neuron} ({'score' if by_score else 'mean count'} {value:.3f})",
                     fontsize="medium")
        if i % ncols == 0:
            ax.set_ylabel("rate (Hz)")
        if i + ncols >= neurons.size:  # one time label per column is enough; rows repeat it
            ax.set_xlabel("time (s)")

    handles = [Line2D([], [], color="black" if single else "gray", linestyle="-", label="observed"),
               Line2D([], [], color="C3" if single else "gray", linestyle="--", label="predicted")]
    if true_rate is not None:
        handles.append(Line2D([], [], color="C2" if single else "gray", linestyle=":", label="true"))
    if not single:
        handles += [Line2D([], [], color=col, label=lab) for col, lab in zip(colors, labels)]
    # Outside the panels: a legend inside one of them would hide part of that neuron's PSTH.
    fig.legend(handles=handles, fontsize="small", loc="outside right upper")
    fig.suptitle("PSTHs of the best-predicted neurons" if by_score else "PSTHs of the most active neurons")
    return fig


# --------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------
def _labels(values: np.ndarray, what: str, n_classes: int) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind not in "iub":
        as_float = values.astype(np.float64)
        if not np.all(np.isfinite(as_float) & (as_float == np.round(as_float))):
            raise ValueError(f"confusion_matrix: {what} labels must be whole numbers in 0..{n_classes - 1}")
        values = as_float.astype(np.int64)
    values = values.astype(np.int64)
    bad = (values < 0) | (values >= n_classes)
    if bad.any():
        raise ValueError(
            f"confusion_matrix: {what} label {values[bad][0]} is outside 0..{n_classes - 1} "
            f"({int(bad.sum())} such labels)"
        )
    return values


def confusion_matrix(
    name: str,
    predicted: np.ndarray,
    target: np.ndarray,
    n_classes: int,
    class_names: list[str] | None = None,
) -> Figure:
    """The confusion matrix of a static decoder (e.g. choice, block): rows are true classes,
    columns predicted ones, coloured by count; each cell shows its count and its fraction of
    the row (how often that true class was decoded as each class), so rare classes read as
    clearly as common ones. The title carries `name` and the accuracy. Labels must be integers
    in 0..n_classes-1; anything else raises ValueError."""
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"confusion_matrix: n_classes must be at least 1, got {n_classes}")
    pred = _labels(predicted, "predicted", n_classes)
    true = _labels(target, "target", n_classes)
    if pred.shape != true.shape:
        raise ValueError(f"confusion_matrix: {pred.size} predicted labels but {true.size} targets")
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"confusion_matrix: {len(class_names)} class names for {n_classes} classes")
    names = [str(c) for c in (class_names if class_names is not None else range(n_classes))]

    counts = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    row_total = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, row_total, out=np.full(counts.shape, np.nan), where=row_total > 0)
    accuracy = np.trace(counts) / true.size if true.size else float("nan")

    side = min(12.0, 2.5 + 0.6 * n_classes)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    fig.colorbar(image, ax=ax, label="trials", shrink=0.8)
    ticks = np.arange(n_classes)
    ax.set_xticks(ticks, names, rotation=45 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n_classes <= MAX_ANNOTATED_CLASSES:
        # Dark cells get white text so the numbers stay readable on any colour.
        dark = counts > 0.6 * max(int(counts.max()), 1)
        for (i, j), count in np.ndenumerate(counts):
            frac = "–" if np.isnan(fraction[i, j]) else f"{fraction[i, j]:.0%}"
            ax.text(j, i, f"{count}\n{frac}", ha="center", va="center", fontsize="small",
                    color="white" if dark[i, j] else "black")
    ax.set_title(f"{name}   accuracy {accuracy:.3f}  (n={true.size})")
    return fig


# --------------------------------------------------------------------------------------------
# bits per spike
# --------------------------------------------------------------------------------------------
def bps_histogram(bps: np.ndarray, oracle: np.ndarray | None = None) -> Figure:
    """How encoding quality (bits per spike) spreads over neurons. Left: the histogram of the
    model's per-neuron bps with a vertical line at its mean, overlaid with the oracle's (the
    true rates' bps on simulated data) when given. Right, with an oracle: model against oracle
    per neuron with the y = x line, so the gap to the best achievable is read per neuron. NaN
    values (e.g. silent neurons) are dropped and their count is shown in the legend."""
    bps = np.asarray(bps, dtype=np.float64).reshape(-1)
    if oracle is not None:
        oracle = np.asarray(oracle, dtype=np.float64).reshape(-1)
        if oracle.shape != bps.shape:
            raise ValueError(f"bps_histogram: oracle has {oracle.size} neurons but bps has {bps.size}")

    series = [("model", bps, "C0")] + ([("oracle", oracle, "C1")] if oracle is not None else [])
    finite_all = np.concatenate([v[np.isfinite(v)] for _, v, _ in series])
    fig = new_figure(10.0 if oracle is not None else 5.5, 4.0)
    ax = fig.add_subplot(1, 2 if oracle is not None else 1, 1)
    if finite_all.size:
        lo, hi = float(finite_all.min()), float(finite_all.max())
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, int(np.clip(np.sqrt(finite_all.size), 10, 50)) + 1)
    for label, values, color in series:
        finite = values[np.isfinite(values)]
        dropped = values.size - finite.size
        text = f"{label} ({finite.size} neurons" + (f", {dropped} NaN dropped)" if dropped else ")")
        if finite.size:
            ax.hist(finite, bins=edges, color=color, alpha=0.55, label=text)
            ax.axvline(finite.mean(), color=color, linestyle="--", linewidth=1.3,
                       label=f"{label} mean {finite.mean():.3f}")
        else:
            # Keep the dropped count visible even when nothing is left to histogram.
            ax.plot([], [], color=color, label=text)
    if not finite_all.size:
        ax.text(0.5, 0.5, "no finite bits per spike", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("bits per spike")
    ax.set_ylabel("neurons")
    ax.set_title(f"bits per spike over {bps.size} neurons")
    # Below the panels, so the legend never covers the bars or the mean lines.
    fig.legend(handles=ax.get_legend_handles_labels()[0], fontsize="small", loc="outside lower center",
               ncols=2)

    if oracle is not None:
        ax2 = fig.add_subplot(1, 2, 2)
        both = np.isfinite(bps) & np.isfinite(oracle)
        ax2.scatter(oracle[both], bps[both], s=10, color="C0", alpha=0.7)
        if both.any():
            lo = float(min(oracle[both].min(), bps[both].min()))
            hi = float(max(oracle[both].max(), bps[both].max()))
            ax2.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1.0, label="y = x")
            ax2.legend(fontsize="small", loc="upper left")
        else:
            ax2.text(0.5, 0.5, "no neuron with both values", ha="center", va="center", transform=ax2.transAxes)
        ax2.set_xlabel("oracle bits per spike")
        ax2.set_ylabel("model bits per spike")
        ax2.set_title(f"per neuron ({int(both.sum())} with both)")
    return fig
