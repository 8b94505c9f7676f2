"""utils.distributed (launcher) and utils.strategies (DDP, ZeRO-1, FSDP2): real multi-process runs on CPU/gloo.

Every strategy's loss trajectory equals the single-process run; per-rank bytes equal
utils.memory.zero_memory_per_device within the padding each API's split allows; failures name the rank
and leave no process behind (checked by listing the process tree).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from utils.distributed import (
    WorkerError,
    WorkerTimeout,
    allreduce_parts,
    choose_backend,
    demo_worker,
    launch,
    process_group_timeout,
)
from utils.strategies import (
    STRATEGIES,
    DistConfig,
    comm_in_model_sizes,
    expected_bytes,
    global_losses,
    padding_allowance,
    run,
)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
#: Every rank computes the same sums in a different order (slices, then an all-reduce): fp32 round-off
#: (~1e-7 relative) that AdamW's normalised update can amplify a little over a few steps.
LOSS_TOL = dict(rtol=1e-5, atol=1e-5)
RUNS = {  # strategy -> (world_size, shard_factor)
    "ddp": (2, None), "zero1": (2, None), "zero2": (2, None), "zero3": (2, None), "hybrid": (4, 2),
}


def _cfg(strategy, **kw):
    n, f = RUNS.get(strategy, (1, None))
    return DistConfig(strategy, n, shard_factor=f, steps=STEPS, return_weights=True, **kw)


@pytest.fixture(scope="module")
def reference():
    return run(_cfg("single"))[0]


@pytest.fixture(scope="module")
def reports():
    return {s: run(_cfg(s)) for s in RUNS}


def reference_lr():
    return _cfg("single").lr


def _tiny_shapes():
    from utils.models import build_model

    model = build_model("decoder", "tiny", vocab_size=DistConfig("single", 1).vocab_size, max_seq_len=32)
    return [tuple(p.shape) for p in model.parameters()], sum(p.numel() for p in model.parameters())


# ---- bad input: a clear ValueError before any process starts -------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(strategy="ddp", world_size=0), "world_size=0"),
        (dict(strategy="ddp", world_size=3, global_batch=8), "global_batch=8 cannot be split"),
        (dict(strategy="zero4", world_size=2), "strategy='zero4'"),
        (dict(strategy="hybrid", world_size=4, shard_factor=3), r"shard_factor=3 .*accepted: \[2\]"),
        (dict(strategy="hybrid", world_size=4, shard_factor=4), "shard_factor=4"),
        (dict(strategy="ddp", world_size=2, shard_factor=2), "only applies to strategy='hybrid'"),
        (dict(strategy="single", world_size=2), "runs one process"),
        (dict(strategy="ddp", world_size=2, mixed_precision=True), "FSDP options"),
    ],
)
def test_bad_config_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistConfig(**kwargs)


def test_launch_rejects_bad_arguments_before_starting():
    with pytest.raises(ValueError, match="world_size=0"):
        launch(demo_worker, 0)
    with pytest.raises(ValueError, match="cannot import it"):
        launch(lambda rank: rank, 2)
    with pytest.raises(ValueError, match="timeout"):
        launch(demo_worker, 2, timeout=0)
    if torch.cuda.device_count() < 8:
        with pytest.raises(ValueError, match="one CUDA GPU per rank"):
            choose_backend(8, "nccl")
    assert choose_backend(2, "gloo") == "gloo"


# ---- the collectives ------------------------------------------------------------------------------------


def test_all_reduce_is_reduce_scatter_then_all_gather():
    out = launch(allreduce_parts, 2, 8, timeout=120)
    total = [sum(v) for v in zip(*(o["input"] for o in out))]
    for r, o in enumerate(out):
        assert o["chunk"] == total[r * 4 : (r + 1) * 4]  # each rank owns one half of the sum
        assert o["gathered"] == o["all_reduce"] == total
    sent = {k: v[2] for k, v in out[0]["comm"].items()}
    assert sent["all_reduce"] == sum(v for k, v in sent.items() if k != "all_reduce")  # RS + AG bytes


# ---- strategies against the single-process reference ---------------------------------------------------


@pytest.mark.parametrize("strategy", list(RUNS))
def test_loss_trajectory_equals_single_process(strategy, reports, reference):
    losses = global_losses(reports[strategy])
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(reference.losses), **LOSS_TOL)
    assert reference.losses[-1] < reference.losses[0]  # it is training, not standing still
    # weights: AdamW divides by sqrt(v), so an entry whose gradient is ~0 can turn a 1e-9 round-off into a
    # visible update; a handful of entries may differ by a fraction of one step (lr), all others agree
    got = torch.cat([reports[strategy][0].weights[k].flatten() for k in reference.weights])
    ref = torch.cat([v.flatten() for v in reference.weights.values()])
    diff = (got - ref).abs()
    assert diff.max() < 0.1 * reference_lr(), diff.max()
    assert (diff > 1e-5).float().mean() < 1e-3


def test_ddp_replicas_are_bit_identical_after_every_step(reports):
    for strategy in ("ddp", "zero1"):
        a, b = (r.digests for r in reports[strategy])
        assert len(a) == STEPS and a == b


@pytest.mark.parametrize("strategy", list(RUNS))
def test_per_rank_bytes_equal_the_zero_formula(strategy, reports):
    shapes, n_params = _tiny_shapes()
    cfg = _cfg(strategy)
    expected = expected_bytes(cfg, n_params)
    pad = padding_allowance(cfg, shapes)
    for r in reports[strategy]:
        assert abs(r.model_state_bytes - expected) <= pad, (r.rank, r.model_state_bytes, expected, pad)
    # the shards of one sharding group add up to exactly one copy: nothing lost, nothing duplicated
    group = reports[strategy][: cfg.shard_group]
    if strategy == "zero1":
        assert sum(r.optimizer_bytes for r in group) == 8 * n_params * 1
    if strategy in ("zero2", "zero3", "hybrid"):
        assert sum(r.grad_bytes for r in group) == 4 * n_params
        assert sum(r.param_bytes for r in group) == 4 * n_params
        assert sum(r.optimizer_bytes for r in group) == 8 * n_params


def test_reshard_after_forward_false_keeps_full_parameters_between_forward_and_backward(reports):
    _, n_params = _tiny_shapes()
    z2, z3 = reports["zero2"][0], reports["zero3"][0]
    assert z2.param_bytes_step == 4 * n_params and z2.param_bytes == 2 * n_params  # full in step, half at rest
    assert z3.param_bytes_step == z3.param_bytes == 2 * n_params


def test_zero3_moves_one_and_a_half_times_ddp(reports):
    _, n_params = _tiny_shapes()
    ddp = comm_in_model_sizes(reports["ddp"][0], n_params)
    zero3 = comm_in_model_sizes(reports["zero3"][0], n_params)
    zero2 = comm_in_model_sizes(reports["zero2"][0], n_params)
    assert ddp == pytest.approx(2.0) and zero2 == pytest.approx(2.0)
    assert zero3 == pytest.approx(3.0)  # all-gather forward + all-gather backward + reduce-scatter


def test_mixed_precision_halves_all_gather_and_stays_close(reference):
    (r0, _) = run(DistConfig("zero3", 2, steps=STEPS, mixed_precision=True))
    _, n_params = _tiny_shapes()
    assert r0.comm["all_gather"][1] == 2 * (2 * n_params)  # two all-gathers of bf16 = 2 bytes/param
    assert r0.comm["reduce_scatter"][1] == 4 * n_params  # gradients reduced in fp32
    torch.testing.assert_close(torch.tensor(r0.losses[:1]), torch.tensor(reference.losses[:1]), rtol=0, atol=0.05)


# ---- faults: the launcher names the rank and leaves nothing behind --------------------------------------


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


@pytest.fixture
def process_tree():
    launch(demo_worker, 2, timeout=120)  # warm-up: the forkserver (and its helpers) now exist
    before = _descendants()
    yield before
    time.sleep(0.2)
    assert _descendants() == before, "worker processes survived the launch"


@pytest.mark.parametrize(
    "behaviour, error, match",
    [
        ("raise", WorkerError, r"rank 1 raised ValueError: rank 1 failed on purpose"),
        ("kill", WorkerError, r"rank 1 was killed by signal SIGKILL"),
        ("hang", WorkerTimeout, r"rank\(s\) \[0, 1\] still running after the 3 s timeout"),
    ],
)
def test_worker_failure_names_the_rank_and_leaves_no_orphans(behaviour, error, match, process_tree):
    start = time.monotonic()
    with pytest.raises(error, match=match) as info:
        launch(demo_worker, 2, behaviour, 600, timeout=3)
    assert time.monotonic() - start < 3 + 10  # within the timeout (plus the stop grace)
    assert info.value.rank == 1 or behaviour == "hang"


def test_a_collective_outlives_the_launch_timeout():
    # a rank waiting for a hung peer must not fail with its own "Timed out waiting for recv" before the
    # launcher reports the hang: under load that error won the race and blamed the healthy rank 0
    assert all(t > 5 for t in launch(process_group_timeout, 2, timeout=5))


def test_workers_exit_when_the_launching_process_is_killed():
    # a notebook kernel killed mid-run (restart, kill -9) must not leave its ranks waiting forever
    code = "from utils.distributed import demo_worker, launch; launch(demo_worker, 2, 'hang', 600, timeout=600)"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    proc = psutil.Process(parent.pid)
    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.2)
        tree = proc.children(recursive=True)
        workers = [p for p in tree if p.ppid() != parent.pid]  # the forkserver's children: the ranks
    assert len(workers) == 2, "the workers did not start"
    tree = proc.children(recursive=True)
    parent.kill()
    parent.wait()
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, f"processes survived their launcher: {alive}"


def test_cpu_offload_needs_gpu_ranks():
    if torch.cuda.device_count() < 2:
        with pytest.raises(ValueError, match="cpu_offload=True needs one CUDA GPU per rank"):
            run(DistConfig("zero3", 2, cpu_offload=True))


def test_successful_launch_returns_in_rank_order_and_leaves_no_orphans(process_tree):
    out = launch(demo_worker, 3, timeout=60)
    assert [r for r, _ in out] == [0, 1, 2]
    assert len({pid for _, pid in out}) == 3 and os.getpid() not in {pid for _, pid in out}


# ---- the training script under torchrun: two "nodes", sharded checkpoint resumed at another size ---------


def _torchrun(tmp, nnodes, nproc, args, port):
    # one torchrun per "node", all on 127.0.0.1: the c10d rendezvous assigns node ranks as they join
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc-per-node={nproc}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=test{port}",
           str(ROOT / "scripts" / "train_distributed.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return [subprocess.Popen(cmd, cwd=tmp, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(nnodes)]


@pytest.mark.slow
def test_two_node_torchrun_trains_and_resumes_at_another_world_size(tmp_path):
    from utils.distributed import free_port

    ckpt = tmp_path / "ckpt"
    common = ["--strategy", "zero3", "--global-batch", "8", "--seq-len", "32", "--lr", "3e-3"]
    first = _torchrun(tmp_path, 2, 1, [*common, "--steps", "3", "--checkpoint", str(ckpt)], free_port())
    outs = [p.communicate(timeout=300)[0] for p in first]
    assert all(p.returncode == 0 for p in first), outs
    second = _torchrun(tmp_path, 1, 4, [*common, "--steps", "6", "--checkpoint", str(ckpt), "--resume"],
                       free_port())
    out2 = second[0].communicate(timeout=300)[0]
    assert second[0].returncode == 0, out2
    losses = [float(line.split()[-1]) for o in (outs[0], out2) for line in o.splitlines()
              if line.startswith("step ")]
    ref = run(DistConfig("single", 1, steps=6, global_batch=8, seq_len=32, lr=3e-3))[0].losses
    assert "world size 2" in outs[0] and "resumed from step 3 (saved at world size 2) on world size 4" in out2
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref), **LOSS_TOL)


def test_strategies_cover_the_issue():
    assert set(STRATEGIES) == {"single", *RUNS}


@pytest.mark.slow
def test_accelerate_launch_runs_the_same_script(tmp_path):
    cfg = ROOT / "scripts" / "accelerate_fsdp.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg), "--num_processes", "2",
           str(ROOT / "scripts" / "train_distributed.py"), "--steps", "3", "--checkpoint", str(tmp_path / "ck")]
    out = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    kind = "FSDP" if torch.cuda.device_count() >= 2 else "MULTI_CPU"  # accelerate's FSDP path needs GPUs
    assert f"DistributedType.{kind}" in out.stdout, out.stdout
    losses = [float(line.split()[-1]) for line in out.stdout.splitlines() if line.startswith("step ")]
    ref = run(DistConfig("single", 1, steps=3))[0].losses
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref), **LOSS_TOL)
    assert sorted(p.name for p in (tmp_path / "ck" / "step-000003").iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp", "meta.json"]  # one shard file per rank
