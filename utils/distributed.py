"""Start N worker processes that form one ``torch.distributed`` job, from a notebook, a test or a script.

:func:`launch` runs ``fn(rank, *args)`` in ``world_size`` fresh processes and returns their results in
rank order. ``rank`` is a :class:`Rank` (its number, the world size, its device and backend): rank and
world size are arguments, never globals.

* Backend: gloo on CPU; NCCL only where every rank has its own CUDA GPU (``world_size <=
  torch.cuda.device_count()``). With one GPU or none, the ranks are CPU processes talking over gloo.
* Rendezvous: the parent opens a ``TCPStore`` on port 0 (the OS picks a free port, so two jobs never
  collide) and the workers join it as clients.
* Failure: a worker that raises, is killed by a signal, or is still running at ``timeout`` seconds makes
  :func:`launch` stop every worker (SIGTERM, then SIGKILL) and raise :class:`WorkerError` /
  :class:`WorkerTimeout` naming the rank and, for an exception, its type, message and traceback. A worker
  whose launching process dies exits by itself (it watches that pid), so no process is left behind.
* Start-up: where the platform has it (Linux, macOS) the workers fork from a *forkserver* that imported
  torch and transformers once, so a launch costs well under a second after the first (a plain ``spawn``
  re-imports torch in every worker: 5-10 s on two cores). The forkserver is a clean process, never a fork
  of the Jupyter kernel, and it exits with its parent. Worker functions must live in an importable module:
  a process cannot import a function defined in a notebook.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from dataclasses import dataclass

from utils.validate import check_choice, check_int, check_number

#: Modules the forkserver imports once, so every worker starts with them loaded.
PRELOAD = (
    "torch",
    "torch.distributed",
    "torch.distributed.fsdp",
    "torch.distributed.checkpoint",
    "transformers.models.gpt2.modeling_gpt2",
    "utils.models",
    "utils.strategies",
)
BACKENDS = ("auto", "gloo", "nccl")
HOST = "127.0.0.1"
PEER_GRACE_S = 60.0  # a collective may wait this much longer than the launch timeout (see _worker)
ROOT_CAUSE_WAIT_S = 2.0  # how long a reported error waits for a peer killed by a signal to show up


class WorkerError(RuntimeError):
    """A worker process failed; ``rank`` names it, ``remote_traceback`` is its traceback (if it raised)."""

    def __init__(self, message: str, rank: int | None, remote_traceback: str = ""):
        super().__init__(message)
        self.rank = rank
        self.remote_traceback = remote_traceback


class WorkerTimeout(WorkerError, TimeoutError):
    """Workers were still running when the launch's timeout expired; ``ranks`` lists them."""

    def __init__(self, message: str, ranks: list[int]):
        super().__init__(message, ranks[0] if ranks else None)
        self.ranks = ranks


@dataclass(frozen=True)
class Rank:
    """What a worker knows about its place in the job (passed as the first argument to the function)."""

    rank: int  # this process's number, 0 .. world_size - 1
    world_size: int  # number of processes in the job
    backend: str  # "gloo" (CPU) or "nccl" (one CUDA GPU per rank)

    @property
    def device(self):
        """cuda:<rank> under NCCL, else the CPU."""
        import torch

        return torch.device(f"cuda:{self.rank}" if self.backend == "nccl" else "cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def check_world_size(world_size) -> int:
    """``world_size`` as an int >= 1 (a NumPy int too); a ValueError otherwise."""
    return check_int("world_size", world_size, minimum=1)


def choose_backend(world_size: int, backend: str = "auto") -> str:
    """``"nccl"`` when every rank can have its own CUDA GPU, else ``"gloo"`` (asking for nccl without
    enough GPUs is a ValueError, not a hang)."""
    import torch

    world_size = check_world_size(world_size)
    check_choice("backend", backend, BACKENDS)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    enough = gpus >= world_size and torch.distributed.is_nccl_available()
    if backend == "nccl" and not enough:
        raise ValueError(
            f"backend='nccl' needs one CUDA GPU per rank: world_size={world_size} but {gpus} GPU(s) visible; "
            "use backend='gloo' or 'auto'"
        )
    if backend == "auto":
        return "nccl" if enough and gpus > 1 else "gloo"
    return backend


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (for torchrun's --rdzv-endpoint; :func:`launch` needs none)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process stays a zombie until reaped: Linux shows state "Z"
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _watch_launcher(launcher_pid: int) -> None:
    # a worker whose launcher died (kernel restart, kill -9) would otherwise wait in a collective forever.
    # Watch the launcher itself: a forkserver worker's parent is the forkserver, which in turn only exits
    # once every worker has (each holds its liveness pipe).
    while _alive(launcher_pid):
        time.sleep(0.5)
    os._exit(1)


def _worker(fn, rank: int, world_size: int, backend: str, port: int, timeout: float, args, results, threads,
            launcher_pid: int):
    import datetime

    import torch
    import torch.distributed as dist

    threading.Thread(target=_watch_launcher, args=(launcher_pid,), daemon=True).start()
    torch.set_num_threads(threads)  # N processes share the cores: one BLAS pool each, not N oversubscribed
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        # the launcher owns the deadline: a collective gets longer than the whole job, so a rank waiting for
        # a hung peer never fails with its own "timed out in recv" before the launcher reports the hang
        # (under load that error could win the race and blame the healthy rank)
        limit = datetime.timedelta(seconds=timeout + PEER_GRACE_S)
        store = dist.TCPStore(HOST, port, is_master=False, timeout=limit)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=limit)
        out = fn(Rank(rank, world_size, backend), *args)
        # plain pickle copies tensors into the message; the queue's own pickler would share them through
        # file descriptors that vanish when this process exits
        results.put((rank, "ok", pickle.dumps(out), ""))
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent, which raises it there
        results.put((rank, "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        results.close()
        results.join_thread()
        os._exit(1)  # skip destroy_process_group: peers may be blocked in a collective with us
    if dist.is_initialized():
        dist.destroy_process_group()


def _context():
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))  # only takes effect when the server first starts
        return ctx
    return mp.get_context("spawn")


def _stop(procs) -> None:
    procs = [p for p in procs if p.pid is not None]  # started ones only
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 3
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code} without reporting a result"


def _raise_root_cause(procs, rank: int, error: str, tb: str):
    # a peer's death shows up first as a connection error on a healthy rank: look briefly for a rank that
    # was killed by a signal, which is the cause, before blaming the rank that reported
    deadline = time.monotonic() + ROOT_CAUSE_WAIT_S
    while time.monotonic() < deadline:
        killed = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode is not None and p.exitcode < 0]
        if killed:
            r, code = killed[0]
            raise WorkerError(f"rank {r} {_exit_reason(code)}; rank {rank} then failed: {error[:300]}", r, tb)
        time.sleep(0.02)
    raise WorkerError(f"rank {rank} raised {error}\n--- traceback from rank {rank} ---\n{tb}", rank, tb)


def launch(fn, world_size: int, *args, timeout: float = 120.0, backend: str = "auto", threads: int = 1):
    """Run ``fn(Rank(r, world_size, backend), *args)`` on ``world_size`` processes; results in rank order.

    ``fn`` must be importable (defined in a module) and its arguments and result picklable. ``timeout``:
    seconds for the whole job, start-up included. ``threads``: torch threads per worker. Raises
    :class:`WorkerError` (a worker raised or died) or :class:`WorkerTimeout` (still running at the
    timeout); in every case all workers are stopped before it returns or raises.
    """
    import torch.distributed as dist

    world_size = check_world_size(world_size)
    timeout = check_number("timeout", timeout, minimum=0, min_open=True)  # seconds
    if getattr(fn, "__module__", "__main__") == "__main__" or "<locals>" in getattr(fn, "__qualname__", ""):
        raise ValueError(
            f"fn={getattr(fn, '__qualname__', fn)!r} is defined in __main__ (a notebook or script) or inside a "
            "function; worker processes cannot import it: define it in a module (e.g. utils.strategies)"
        )
    backend = choose_backend(world_size, backend)
    ctx = _context()
    store = dist.TCPStore(HOST, 0, is_master=True, wait_for_workers=False)  # port 0: the OS picks a free one
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(fn, r, world_size, backend, store.port, timeout, args, results, threads, os.getpid()),
            name=f"course-rank-{r}",
            daemon=True,
        )
        for r in range(world_size)
    ]
    outputs: dict[int, object] = {}
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.start()
        while len(outputs) < world_size:
            try:
                rank, status, value, tb = results.get(timeout=0.05)
            except queue.Empty:
                dead = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode is not None and r not in outputs]
                if dead:
                    try:  # a result may still be in flight from a process that just exited
                        rank, status, value, tb = results.get(timeout=1.0)
                    except queue.Empty:
                        r, code = dead[0]
                        raise WorkerError(f"rank {r} {_exit_reason(code)}", r) from None
                elif time.monotonic() > deadline:
                    running = [r for r in range(world_size) if r not in outputs]
                    raise WorkerTimeout(
                        f"rank(s) {running} still running after the {timeout:g} s timeout "
                        f"(hung, or waiting in a collective for a peer); all {world_size} workers stopped",
                        running,
                    ) from None
                else:
                    continue
            if status == "error":
                _raise_root_cause(procs, rank, value, tb)
            outputs[rank] = pickle.loads(value)
        for p in procs:
            p.join(max(1.0, deadline - time.monotonic()))
    finally:
        _stop(procs)
        results.close()
        results.cancel_join_thread()
        del store
    return [outputs[r] for r in range(world_size)]


DEMO_BEHAVIOURS = ("ok", "raise", "kill", "hang")


def demo_worker(rank: Rank, behaviour: str = "ok", seconds: float = 60.0):
    """A worker for demonstrations and tests of the launcher. Rank 0 always waits for the others in a
    barrier; rank 1 (or rank 0 alone) does ``behaviour``: "ok" returns, "raise" raises a ValueError,
    "kill" is killed by SIGKILL, "hang" sleeps ``seconds``. Returns ``(rank, pid)``."""
    import torch.distributed as dist

    check_choice("behaviour", behaviour, DEMO_BEHAVIOURS)
    if rank.rank == min(1, rank.world_size - 1):
        if behaviour == "raise":
            raise ValueError(f"rank {rank.rank} failed on purpose")
        if behaviour == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if behaviour == "hang":
            time.sleep(seconds)
    dist.barrier()
    return rank.rank, os.getpid()


def process_group_timeout(rank: Rank) -> float:
    """Seconds a collective on this rank waits for its peers before failing (a worker for :func:`launch`)."""
    import torch
    from torch.distributed import distributed_c10d as c10d

    device = torch.device("cuda", torch.cuda.current_device()) if rank.backend == "nccl" else torch.device("cpu")
    return c10d._get_default_group()._get_backend(device).options._timeout.total_seconds()


def allreduce_parts(rank: Rank, n: int = 8) -> dict:
    """All-reduce = reduce-scatter + all-gather, on real data: rank r holds ``(r + 1) * [0, 1, ..., n-1]``.

    Returns this rank's input, its reduce-scatter output (one 1/N chunk of the sum), the all-gather of
    those chunks, and ``all_reduce`` of the input, all as lists, plus the bytes each collective moved.
    """
    import torch
    import torch.distributed as dist

    from utils.dist_measure import CollectiveCounter

    n_ranks = rank.world_size
    if n % n_ranks:
        raise ValueError(f"n={n} must be a multiple of world_size={n_ranks}")
    x = torch.arange(n, dtype=torch.float32, device=rank.device) * (rank.rank + 1)
    counter = CollectiveCounter()
    with counter.installed():
        # torch >= 2.13 names them *_single; older releases (Colab's) *_tensor: same operation
        reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        chunk = torch.empty(n // n_ranks, device=rank.device)
        reduce_scatter(chunk, x.clone())
        gathered = torch.empty(n, device=rank.device)
        all_gather(gathered, chunk)
        reduced = x.clone()
        dist.all_reduce(reduced)
    return dict(input=x.tolist(), chunk=chunk.tolist(), gathered=gathered.tolist(), all_reduce=reduced.tolist(),
                comm={k: list(v) for k, v in counter.calls.items()})
