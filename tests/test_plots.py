"""Tests for utils/plots.py: figures build headless and show what they claim."""

import io

import pytest
from matplotlib.figure import Figure

from utils.plots import plot_attention_masks, plot_history
from utils.train import History


def _history(scale=1.0):
    return History(
        step=[10, 20, 30],
        loss=[3.0 * scale, 2.0 * scale, 1.5 * scale],
        tokens_seen=[100, 200, 300],
        eval_step=[20, 30],
        eval_loss=[2.2 * scale, 1.8 * scale],
        eval_tokens_seen=[200, 300],
    )


def test_plot_history_one_and_several_runs():
    fig = plot_history(_history())
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].lines) == 2  # train + held-out
    fig = plot_history([("small", _history()), ("large", _history(0.5))], x="tokens", log_y=True)
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and ax.get_yscale() == "log" and ax.get_xlabel() == "tokens seen"
    assert list(ax.lines[0].get_xdata()) == [100, 200, 300]
    fig.savefig(io.BytesIO(), format="png")  # renders without a display


def test_plot_history_rejects_bad_arguments():
    with pytest.raises(ValueError, match="x='time'"):
        plot_history(_history(), x="time")
    with pytest.raises(ValueError, match="label, History"):
        plot_history([_history()])


def test_plot_attention_masks():
    fig = plot_attention_masks()
    assert len(fig.axes) == 3
    causal = fig.axes[1].images[0].get_array()
    assert causal[0, 1] == 0 and causal[1, 0] == 1  # the first token cannot see the second
    combined = fig.axes[2].images[0].get_array()
    assert combined.shape == (8, 8) and combined[4, 0] == 2 and combined[0, 4] == 0  # cross-attention
    fig.savefig(io.BytesIO(), format="png")
