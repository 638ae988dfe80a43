"""The report's figures, drawn with matplotlib (Agg) from the collector's plain rows; each saved as PNG and PDF.

Every function takes lists of dicts (summary rows or benchmark rows) and a path stem, and writes
`<stem>.png` and `<stem>.pdf` atomically. Figures are sized for a 16 cm text width so that, included at
`\\linewidth`, their 9-10 pt fonts stay legible. Accuracies arrive as fractions and are drawn in percent.
"""
import matplotlib

matplotlib.use("Agg")  # no display on CI machines; must come before pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lowrank_bench.core.io import atomic_path  # noqa: E402

plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
                     "figure.dpi": 100})
WIDTH = 6.3  # inches: the report's text width
MIB = 2 ** 20
REFERENCE_LABELS = {"head": "head only", "full": "full fine-tuning", "scratch": "trained from scratch"}


def save(fig, stem):
    """Write `<stem>.png` (150 dpi) and `<stem>.pdf`; return their paths."""
    out = {}
    for fmt in ("png", "pdf"):
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
        out[fmt] = str(path)
    plt.close(fig)
    return out


def _log2_axis(ax, ranks, label):
    ax.set_xscale("log", base=2)
    ranks = sorted(set(ranks))
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.minorticks_off()
    ax.set_xlabel(label)


def _auto_log(ax, axis, values, label):
    """Log scale where the values span more than a factor of 20; linear otherwise, where a log axis would
    show no labelled tick at all."""
    values = [v for v in values if v is not None and v > 0]
    log = bool(values) and max(values) / min(values) > 20
    getattr(ax, f"set_{axis}scale")("log" if log else "linear")
    getattr(ax, f"set_{axis}label")(f"{label} (ms, log scale)" if log else f"{label} (ms)")


def _pct(x):
    return None if x is None else 100 * x


def _hlines(ax, refs, key, scale=1.0):
    """One labelled horizontal line per reference row (dense, full fine-tuning, ...)."""
    styles = ["-", "--", "-.", ":"]
    for i, r in enumerate(refs):
        if r.get(key) is not None:
            ax.axhline(r[key] * scale, color=f"C{7 - i}", ls=styles[i % 4], lw=1.2,
                       label=REFERENCE_LABELS.get(r["name"], r["name"]))


def _accuracy_line(ax, pts, fmt, color, label):
    """Mean accuracy over seeds against rank (no error bars: an interval over two or three seeds is not one to
    draw; whether a rank is as good as its reference is the forest plot's)."""
    ax.plot([p[0] for p in pts], [_pct(p[1]) for p in pts], fmt, color=color, label=label)


def accuracy_vs_rank(series, refs, chosen, stem, xlabel, truncated=None):
    """Test accuracy against rank, one line per series {label: [(rank, mean acc)]}, references as lines.

    `truncated`: the same for accuracy straight after truncation (SVD), drawn dashed.
    `chosen`: (rank, acc, label) starred, or None.
    """
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    ranks = []
    for i, (label, pts) in enumerate(series.items()):
        _accuracy_line(ax, pts, "o-", f"C{i}", label)
        ranks += [p[0] for p in pts]
    for i, (label, pts) in enumerate((truncated or {}).items()):
        _accuracy_line(ax, [p for p in pts if p[1] is not None], "s--", f"C{i + 3}", label)
    _hlines(ax, refs, "test_acc", 100)
    if chosen:
        ax.plot([chosen[0]], [_pct(chosen[1])], "*", ms=16, color="gold", mec="black", label=chosen[2], zorder=5)
    _log2_axis(ax, ranks, xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower right", ncols=2)
    fig.tight_layout()
    return save(fig, stem)


def lora_accuracy(points, refs, chosen, stem):
    """LoRA test accuracy against r with the trainable share (% of parameters) on a second axis."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    r = [p["rank"] for p in points]
    _accuracy_line(ax, [(p["rank"], p["test_acc"]) for p in points], "o-", "C0", "LoRA test accuracy")
    _hlines(ax, refs, "test_acc", 100)
    if chosen:
        ax.plot([chosen[0]], [_pct(chosen[1])], "*", ms=16, color="gold", mec="black", label=chosen[2], zorder=5)
    _log2_axis(ax, r, "LoRA rank r (log$_2$ scale)")
    ax.set_ylabel("test accuracy (%)")
    share = ax.twinx()
    share.grid(False)
    share.bar(r, [p["trainable_pct"] or 0 for p in points], width=[0.35 * x for x in r], alpha=0.25,
              color="C1", label="trainable share")
    share.set_ylabel("trainable parameters (% of total)")
    ax.set_zorder(share.get_zorder() + 1)  # lines above the bars
    ax.patch.set_visible(False)
    handles = ax.get_legend_handles_labels()
    extra = share.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncols=4, frameon=False)
    fig.tight_layout()
    return save(fig, stem)


def latency_vs_rank(panels, stem, xlabel):
    """Measured latency per batch against rank, one panel per batch size.

    `panels`: {batch_size: {"series": {label: [(rank, median_ms, iqr_ms)]}, "reference": (label, ms) | None,
    "predicted": {label: [(rank, ms)]}}}; the prediction is the reference latency times the FLOP ratio.
    """
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(WIDTH, 3.6), squeeze=False, layout="constrained")
    for ax, (bs, p) in zip(axes[0], sorted(panels.items())):
        ranks, values = [], []
        for i, (label, pts) in enumerate(p["series"].items()):
            ax.errorbar([q[0] for q in pts], [q[1] for q in pts], yerr=[q[2] / 2 for q in pts], fmt="o-",
                        color=f"C{i}", capsize=2, label=label)
            ranks += [q[0] for q in pts]
            values += [q[1] for q in pts]
        for i, (label, pts) in enumerate(p["predicted"].items()):
            ax.plot([q[0] for q in pts], [q[1] for q in pts], "x:", color=f"C{i}", alpha=0.8, label=label)
            values += [q[1] for q in pts]
        if p["reference"]:
            ax.axhline(p["reference"][1], color="C7", lw=1.2, label=p["reference"][0])
            values.append(p["reference"][1])
        _auto_log(ax, "y", values, "latency per batch")
        _log2_axis(ax, ranks, xlabel)
        ax.set_title(f"batch size {bs}")
        ax.tick_params(axis="x", labelrotation=90 if len(set(ranks)) > 6 else 0)
    for ax in axes[0][1:]:
        ax.set_ylabel(None)
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncols = 2 if max(map(len, labels)) > 22 else 3
    fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(labels)), frameon=False)
    return save(fig, stem)


def speedup_map(maps, stem, ylabel):
    """Heat maps of measured speedup over dense, one panel per (dtype, mode), rank down and batch size across.

    `maps`: {(dtype, mode): {(rank, batch_size): speedup}}. Colour is log2 of the speedup on a diverging scale
    centred on 1 (blue pays, red costs), each cell is labelled with its value, and the break-even contour is the
    black line between cells that pay and cells that do not (the grid is categorical: a line along cell edges is
    exact where an interpolated contour would invent values between ranks).
    """
    n = len(maps)
    cols = 2 if n == 4 else min(n, 3)  # fp32/bf16 x eager/compiled as a square
    rows = -(-n // cols)
    everything = [v for cells in maps.values() for v in cells.values()]
    span = max(1.0, max(abs(np.log2(v)) for v in everything))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, 2.9 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, ((dtype, mode), cells) in zip(axes.flat, maps.items()):
        ranks, sizes = sorted({k for k, _ in cells}), sorted({b for _, b in cells})
        grid = np.array([[cells.get((k, b), np.nan) for b in sizes] for k in ranks])  # (ranks, batch sizes)
        image = ax.imshow(np.log2(grid), cmap="RdBu", vmin=-span, vmax=span, aspect="auto", origin="lower")
        for i, j in np.ndindex(grid.shape):
            if not np.isnan(grid[i, j]):
                value = grid[i, j]  # two decimals: 1.02 must not read as 1 beside the break-even line
                ax.text(j, i, f"{value:.2f}" if value < 10 else f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(np.log2(value)) > 0.6 * span else "black")
        pays = grid > 1
        for i, j in np.ndindex(grid.shape):  # break-even: edges between a paying and a non-paying cell
            if i + 1 < grid.shape[0] and pays[i, j] != pays[i + 1, j]:
                ax.plot([j - 0.5, j + 0.5], [i + 0.5, i + 0.5], color="black", lw=2)
            if j + 1 < grid.shape[1] and pays[i, j] != pays[i, j + 1]:
                ax.plot([j + 0.5, j + 0.5], [i - 0.5, i + 0.5], color="black", lw=2)
        ax.set_xticks(range(len(sizes)), [str(b) for b in sizes])
        ax.set_yticks(range(len(ranks)), [str(k) for k in ranks])
        ax.grid(False)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{dtype} {mode}")
    bar = fig.colorbar(image, ax=axes, shrink=0.8)
    ticks = [t for t in (-4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6) if abs(t) <= span]
    bar.set_ticks(ticks, labels=[f"{2.0 ** t:g}x" for t in ticks])
    bar.set_label("speedup over dense (black line: break-even)")
    return save(fig, stem)


def cost_vs_rank(params, memory, refs, stem, xlabel):
    """Parameters (left) and peak training memory (right) against rank.

    `params` and `memory`: {label: [(rank, value)]}; `refs`: rows drawn as lines (their params_total and
    peak_mem_bytes).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.0))
    ranks = []
    for i, (label, pts) in enumerate(params.items()):
        left.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=label)
        ranks += [p[0] for p in pts]
    _hlines(left, refs, "params_total")
    left.set_yscale("log")
    left.set_ylabel("parameters (count, log scale)")
    _log2_axis(left, ranks, xlabel)
    left.legend(loc="best")
    for i, (label, pts) in enumerate(memory.items()):
        pts = [p for p in pts if p[1] is not None]
        right.plot([p[0] for p in pts], [p[1] / MIB for p in pts], "o-", color=f"C{i}", label=label)
    _hlines(right, refs, "peak_mem_bytes", 1 / MIB)
    right.set_ylabel("peak training memory (MiB)")
    _log2_axis(right, ranks, xlabel)
    right.legend(loc="best")
    fig.tight_layout()
    return save(fig, stem)


def layer_error(layers, stem):
    """Per layer: relative Frobenius error (left) and energy retained (right) against k; break-even k dotted."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.0))
    by_layer, ranks = {}, []
    for lay in layers:
        by_layer.setdefault(lay["layer"], []).append(lay)
    for i, (name, ls) in enumerate(by_layer.items()):
        ls = sorted(ls, key=lambda lay: lay["rank"])
        k = [lay["rank"] for lay in ls]
        ranks += k
        left.plot(k, [lay["rel_error"] for lay in ls], "o-", color=f"C{i}", label=f"{name} ({ls[0]['m']}×{ls[0]['n']})")
        right.plot(k, [100 * lay["energy"] for lay in ls], "o-", color=f"C{i}", label=name)
        for ax in (left, right):
            ax.axvline(ls[0]["break_even"], color=f"C{i}", ls=":", lw=1.2,
                       label="break-even $k^*$" if ax is right and i == 0 else None)
    left.set_ylabel(r"relative error $\Vert W-W_k\Vert_F\,/\,\Vert W\Vert_F$")
    right.set_ylabel(r"energy retained $\sum_{i\leq k}\sigma_i^2/\sum_i\sigma_i^2$ (%)")
    for ax in (left, right):
        _log2_axis(ax, ranks, "rank k (log$_2$ scale)")
    left.legend(loc="upper right")
    right.legend(loc="lower right")
    fig.tight_layout()
    return save(fig, stem)


def pareto(panels, stem):
    """Test accuracy against latency per batch, one panel per batch size, the Pareto front as a step line.

    `panels`: {batch_size: {"points": [(label, ms, acc)], "front": [(label, ms, acc)]}}.
    """
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(WIDTH, 3.4), squeeze=False)
    for ax, (bs, p) in zip(axes[0], sorted(panels.items())):
        pts = p["points"]
        ax.plot([q[1] for q in pts], [_pct(q[2]) for q in pts], "o", color="C0", alpha=0.6, label="model")
        front = sorted(p["front"], key=lambda q: q[1])
        ax.step([q[1] for q in front], [_pct(q[2]) for q in front], "-", where="post", color="C3", lw=1.5,
                label="Pareto front")
        ax.plot([q[1] for q in front], [_pct(q[2]) for q in front], "o", color="C3")
        for label, ms, acc in front:
            ax.annotate(label, (ms, _pct(acc)), textcoords="offset points", xytext=(3, -9), fontsize=7)
        _auto_log(ax, "x", [q[1] for q in pts], "latency per batch")
        ax.set_title(f"batch size {bs}")
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    return save(fig, stem)


def curves(histories, stem):
    """Loss and accuracy per epoch (train, validation's stop part, test), one row of two panels per run: the mean
    over seeds, and the band from the lowest to the highest seed where there are several.

    `histories`: {title: [one history per seed: [{"epoch", "train_loss", "train_acc", "stop_loss", ...}]]}.
    """
    n = len(histories)
    fig, axes = plt.subplots(n, 2, figsize=(WIDTH, 2.5 * n), squeeze=False)
    for (title, seeds), (loss_ax, acc_ax) in zip(histories.items(), axes):
        epochs = sorted({h["epoch"] for hist in seeds for h in hist})
        for i, split in enumerate(("train", "stop", "test")):
            name = {"stop": "validation (stop part)"}.get(split, split)
            for ax, field, scale in ((loss_ax, f"{split}_loss", 1.0), (acc_ax, f"{split}_acc", 100.0)):
                # (seeds, epochs), NaN where a seed stopped early or the value is absent (train at epoch 0)
                values = np.array([[next((scale * h[field] for h in hist if h["epoch"] == e
                                          and h.get(field) is not None), np.nan) for e in epochs] for hist in seeds])
                seen = ~np.isnan(values).all(axis=0)
                if not seen.any():
                    continue
                x, values = np.array(epochs)[seen], values[:, seen]
                ax.plot(x, np.nanmean(values, axis=0), "o-", color=f"C{i}", label=name, ms=3)
                if len(seeds) > 1:
                    ax.fill_between(x, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=f"C{i}",
                                    alpha=0.2, lw=0)
        for ax, what in ((loss_ax, "cross-entropy loss"), (acc_ax, "accuracy (%)")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            ax.set_title(title)
            if len(epochs) <= 12:
                ax.set_xticks(epochs)  # one epoch must not get a 0.96 ... 1.04 axis
            else:
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        acc_ax.legend(loc="lower right")
    n_seeds = max(len(seeds) for seeds in histories.values())
    if n_seeds > 1:
        fig.suptitle(f"mean over {n_seeds} seeds; band from the lowest to the highest seed", fontsize=8)
    fig.tight_layout()
    return save(fig, stem)


def confusion(matrices, stem):
    """Confusion matrices (rows = true class) side by side, coloured by row share, counts written in."""
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(WIDTH, WIDTH / n * 0.95 + 0.3), squeeze=False)
    for ax, (title, (matrix, classes)) in zip(axes[0], matrices.items()):
        m = np.asarray(matrix, dtype=float)
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        if len(m) <= 12:
            for i, j in np.ndindex(m.shape):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=6 if len(m) > 5 else 9,
                        color="white" if share[i, j] > 0.5 else "black")
        labels = [str(c)[:12] for c in classes] if classes else [str(i) for i in range(len(m))]
        ticks = range(len(m))
        ax.set_xticks(ticks, labels, rotation=90 if max(map(len, labels)) > 2 else 0)
        ax.set_yticks(ticks, labels)
        ax.grid(False)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
    fig.tight_layout()
    return save(fig, stem)


VERDICT_COLOURS = {"within": "C2", "worse": "C3", "undecided": "C1"}
GROUP_MARKERS = "osD^v<>p"
FOREST_MAX_HEIGHT = 8.5  # inches: with its caption, a figure never taller than the report's text height


def _symlog_ticks(low, high, linear, most):
    """Round ticks between `low` and `high` on a symlog axis (linear within ±`linear`), spaced out so that no two
    are closer than 1/`most` of the axis: 0, then outwards."""
    def position(v):
        return np.sign(v) * (abs(v) / linear if abs(v) <= linear else 1 + np.log10(abs(v) / linear))

    gap = (position(high) - position(low)) / most
    ticks = [0.0]
    for side in (1, -1):
        for step in (0.5, 1, 2, 5, 10, 20, 50, 100):
            v = side * step
            if low <= v <= high and abs(position(v) - position(ticks[-1] if side > 0 else ticks[0])) >= gap:
                ticks = ticks + [v] if side > 0 else [v] + ticks
    return ticks


def forest(panels, margin_points, reference, stem):
    """Each compared model's paired difference to its reference (dot) with its one-sided 95 % bounds (bar), in
    points, coloured by verdict, with the −δ line; one panel per token table, one shaded band and marker per group.

    `panels`: {title: [(group, [(label, diff, lower, upper, verdict, sequence)])]}, differences as fractions, each
    group's rows top down; `sequence` "not tested" draws the dot hollow (below the stop of its fixed sequence),
    "chosen" sets the label in bold. The axis is linear within a few margins of 0 and logarithmic beyond, so a
    model far below its reference does not squash the ones near −δ.
    """
    rows = max(sum(len(g) + 1 for _, g in groups) for groups in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, min(FOREST_MAX_HEIGHT, 1.5 + 0.17 * rows)),
                             squeeze=False, layout="constrained")
    linear = max(1.0, 4 * margin_points)
    every = [100 * v for groups in panels.values() for _, g in groups for m in g for v in m[1:4]]
    low, high = min(min(every), -margin_points), max(max(every), 0.0)
    pad = lambda v: v * 1.3 if abs(v) > linear else v + 0.15 * linear * (1 if v >= 0 else -1)  # noqa: E731
    ticks = _symlog_ticks(pad(low), pad(high), linear, most=10 if len(panels) == 1 else 6)
    for ax, (title, groups) in zip(axes[0], panels.items()):
        y, where, labels, bold = 0, [], [], []
        for g, (name, members) in enumerate(groups):
            top = y
            for label, diff, lower, upper, verdict, sequence in members:
                colour = VERDICT_COLOURS.get(verdict, "C7")
                ax.plot([100 * lower, 100 * upper], [y, y], color=colour, lw=2, solid_capstyle="butt")
                ax.plot([100 * diff], [y], GROUP_MARKERS[g % len(GROUP_MARKERS)], color=colour, ms=5,
                        mfc="white" if sequence == "not tested" else colour)
                where.append(y)
                labels.append(label)
                bold.append(sequence == "chosen")
                y -= 1
            if g % 2:
                ax.axhspan(y + 0.5, top + 0.5, color="0.92", zorder=0, lw=0)
            y -= 0.5  # a gap between groups
        ax.axvline(-margin_points, color="black", ls="--", lw=1)
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_xscale("symlog", linthresh=linear)
        ax.set_xlim(pad(low), pad(high))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_yticks(where, labels, fontsize=6 if rows > 40 else 8)
        for tick, strong in zip(ax.get_yticklabels(), bold):
            tick.set_fontweight("bold" if strong else "normal")
        ax.set_ylim(y + 0.5, 0.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("difference (points)")
        if title:
            ax.set_title(title)
    handles = [matplotlib.lines.Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLOURS.items()]
    handles += [matplotlib.lines.Line2D([], [], color="C7", marker="o", mfc="white", lw=0, label="not tested"),
                matplotlib.lines.Line2D([], [], color="black", ls="--", lw=1, label=f"−δ = −{margin_points:g}")]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, title_fontsize=8,
               title=f"paired difference to {reference}, linear within ±{linear:g} points, logarithmic beyond")
    return save(fig, stem)
