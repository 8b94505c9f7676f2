"""utils.dist_report: the ring-traffic arithmetic and the memory table's verdicts (no processes started)."""

import pytest

from utils.dist_report import memory_rows, ring_bytes_sent
from utils.strategies import DistConfig, RankReport


def test_ring_bytes_sent_matches_the_textbook_cases():
    m = 1000.0
    assert ring_bytes_sent(4, 1, m) == pytest.approx(2 * 3 / 4 * m)  # DDP: all-reduce = 2 (N-1)/N
    assert ring_bytes_sent(4, 4, m) == pytest.approx(3 * 3 / 4 * m)  # ZeRO-3: AG + AG + RS
    assert ring_bytes_sent(4, 2, m) == pytest.approx(3 * 1 / 2 * m + 2 * 1 / 2 * m / 2)  # hybrid
    assert ring_bytes_sent(1, 1, m) == 0  # one rank sends nothing


@pytest.mark.parametrize("n, f, match", [(0, 1, "world_size=0"), (4, 3, "must divide"), (4, 0, "shard_factor=0")])
def test_ring_bytes_sent_rejects_bad_input(n, f, match):
    with pytest.raises(ValueError, match=match):
        ring_bytes_sent(n, f, 1.0)


def _report(param, grad, optim):
    return RankReport(rank=0, world_size=2, strategy="zero3", losses=[1.0], param_bytes=param, param_bytes_step=param,
                      grad_bytes=grad, optimizer_bytes=optim, peak_bytes=None, comm={}, step_time_s=0.1)


def test_memory_rows_flag_a_rank_off_the_formula():
    cfg = DistConfig("zero3", 2)
    n_params, shapes = 1000, [(10, 100)]  # one tensor: one row of 100 params per rank may be off
    good = _report(2000, 2000, 4000)  # 16 bytes x 1000 / 2 ranks
    bad = _report(2000, 2000, 4000 + 16 * 100 + 8)
    rows = memory_rows({"zero3": (cfg, [good, bad])}, n_params, shapes)
    assert [r[-1] for r in rows] == ["yes", "NO"]
