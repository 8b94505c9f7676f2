"""Matplotlib figures the notebooks show: loss curves of training runs, attention masks of the objectives.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot state machine, so nothing is shown
twice in Jupyter and nothing needs a display) and returns it; a notebook cell that ends with the figure
displays it, and ``fig.savefig(...)`` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from utils.objectives import attention_masks
from utils.validate import check_choice, fail

X_AXES = ("step", "tokens")


def _runs(histories) -> list[tuple[str, object]]:
    """Accept one History, or a list of (label, History) pairs."""
    if hasattr(histories, "loss"):
        return [("", histories)]
    runs = list(histories)
    if not runs or not all(isinstance(r, (tuple, list)) and len(r) == 2 for r in runs):
        fail("histories", histories, "a History or a non-empty list of (label, History) pairs")
    return [(str(label), h) for label, h in runs]


def plot_history(
    histories,
    x: str = "step",
    log_y: bool = False,
    log_x: bool = False,
    title: str | None = None,
    eval_only: bool = False,
    figsize: tuple[float, float] = (7.0, 4.0),
) -> Figure:
    """Training loss (solid) and held-out loss (dashed, dots) of one or several runs.

    ``histories``: a :class:`utils.train.History` or a list of ``(label, History)``; ``x``: "step" or
    "tokens" (tokens seen, the fair axis when batch sizes differ); ``log_y`` / ``log_x``: logarithmic axes
    (scaling-law plots use both); ``eval_only``: plot the held-out loss alone.
    """
    check_choice("x", x, X_AXES)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for i, (label, h) in enumerate(_runs(histories)):
        color = f"C{i % 10}"
        train_x = h.step if x == "step" else h.tokens_seen
        eval_x = h.eval_step if x == "step" else h.eval_tokens_seen
        prefix = f"{label} " if label else ""
        if not eval_only and h.loss:
            ax.plot(train_x, h.loss, color=color, label=f"{prefix}train")
        if h.eval_loss:
            ax.plot(eval_x, h.eval_loss, "o--", color=color, markersize=3, label=f"{prefix}held-out")
    ax.set_xlabel("optimizer step" if x == "step" else "tokens seen")
    ax.set_ylabel("loss (cross-entropy, nats)")
    if log_y:
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 2, 3, 4 rather than 2 x 10^0
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    if log_x:
        ax.set_xscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


# mask cell values: 0 blocked, 1 self-attention, 2 cross-attention
_MASK_COLORS = ListedColormap(["#f2f2f2", "#3b75af", "#ef8636"])


def _draw_mask(ax, values, title: str, rows: Sequence[str] | None, cols: Sequence[str] | None) -> None:
    ax.imshow(values, cmap=_MASK_COLORS, vmin=0, vmax=2)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    n_rows, n_cols = values.shape
    ax.set_xticks(range(n_cols), list(cols) if cols else range(n_cols), rotation=90, fontsize="small")
    ax.set_yticks(range(n_rows), list(rows) if rows else range(n_rows), fontsize="small")
    ax.set_xticks([i - 0.5 for i in range(1, n_cols)], minor=True)
    ax.set_yticks([i - 0.5 for i in range(1, n_rows)], minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)


def plot_attention_masks(
    encoder_tokens: Sequence[str] = ("The", "teacher", "<X>", "student"),
    decoder_tokens: Sequence[str] = ("<start>", "<X>", "teaches", "the"),
    sentence: Sequence[str] = ("The", "teacher", "teaches", "the", "student"),
    figsize: tuple[float, float] = (13.0, 4.6),
) -> Figure:
    """Three panels: who attends to whom in each architecture (blue: self-attention, orange: cross).

    Encoder-only (MLM): every token sees every token of ``sentence``. Decoder-only (CLM): each token sees
    itself and the tokens before it. Encoder-decoder (span corruption): the encoder reads
    ``encoder_tokens`` bidirectionally; each decoder token sees the whole encoder (cross-attention) and the
    decoder tokens up to itself. ``decoder_tokens`` are the decoder's *inputs*: the target
    "<X> teaches the <Y>" shifted right behind a start token (T5 uses ``<pad>`` for it), so the row of
    "teaches" predicts "the".
    """
    n, ne, nd = len(sentence), len(encoder_tokens), len(decoder_tokens)
    bidirectional = attention_masks(n, n)["bidirectional"].long().numpy()
    causal = attention_masks(n, n)["causal"].long().numpy()
    combined = attention_masks(ne, nd)["encoder-decoder"].long().numpy()
    combined[ne:, :ne] *= 2  # colour the cross-attention block differently
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, 3)
    _draw_mask(axes[0], bidirectional, "Encoder-only (MLM): bidirectional", sentence, sentence)
    _draw_mask(axes[1], causal, "Decoder-only (CLM): causal", sentence, sentence)
    labels = [f"enc:{t}" for t in encoder_tokens] + [f"dec:{t}" for t in decoder_tokens]
    _draw_mask(axes[2], combined, "Encoder-decoder (span corruption)", labels, labels)
    return fig
