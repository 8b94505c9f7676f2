"""Tests for utils/checkpoint.py and utils/io.py: nothing lost, nothing silent.

A checkpoint path that holds anything else is refused (never deleted); a diverged run never saves NaN
weights; a save killed between its two renames is recovered; damaged files are named on load; leftovers of
killed saves are cleaned up; and runs killed with SIGKILL at random moments always resume exactly.
"""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from utils.checkpoint import check_checkpoint_dir, load_checkpoint, old_path, save_checkpoint
from utils.env import seed_everything
from utils.io import IntegrityError, make_temp_dir, remove_stale_temp_dirs, verify_folder
from utils.models import build_model
from utils.train import NonFiniteLossError, TokenBatches, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
V = 128
CFG = dict(batch_size=8, lr=3e-3, warmup_steps=2, log_every=1, eval_every=0, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(4, 100, (97,), generator=torch.Generator().manual_seed(0)).repeat(30)


def _model(seed=0):
    seed_everything(seed)
    return build_model("decoder", "tiny", vocab_size=V)


def _data(tokens):
    return TokenBatches(tokens, "clm", 8, 32, seed=1)


def _run(tokens, path, steps=2, **kw):
    model = _model()
    train(model, _data(tokens), TrainConfig(steps=steps, **CFG), checkpoint_dir=path, progress=False, **kw)
    return model


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------------ never delete what is not ours


def test_a_folder_of_notes_is_refused_and_kept(tmp_path, tokens):
    # the repro: before, one training step left only the checkpoint files (notes.txt deleted)
    folder = tmp_path / "my-project"
    folder.mkdir()
    (folder / "notes.txt").write_text("three weeks of notes")
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*my-project.*not a course checkpoint.*refusing"):
        _run(tokens, folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "three weeks of notes"
    with pytest.raises(ValueError, match=r"path=.*refusing"):  # save_checkpoint itself refuses too
        save_checkpoint(folder, _model(), step=0)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_file_is_refused_and_kept(tmp_path, tokens):
    # the repro: before, a file at checkpoint_dir was silently moved aside to "<name>.old" and deleted
    target = tmp_path / "results.csv"
    target.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*results.csv.*is a file.*refusing"):
        _run(tokens, target)
    assert target.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_a_foreign_old_folder_is_refused(tmp_path, tokens):
    old = tmp_path / "ck.old"
    old.mkdir()
    (old / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*ck\.old.*not a course checkpoint"):
        _run(tokens, tmp_path / "ck")
    assert (old / "keep.txt").read_text() == "x"


def test_an_empty_folder_and_an_earlier_checkpoint_are_accepted(tmp_path, tokens):
    empty = tmp_path / "ck"
    empty.mkdir()
    _run(tokens, empty)
    assert load_checkpoint(empty).step == 2
    _run(tokens, empty, steps=3)  # a new run over an earlier checkpoint replaces it
    assert load_checkpoint(empty).step == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_an_unwritable_folder_is_refused_before_training(tmp_path, tokens, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    steps = []
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*not writable"):
        _run(tokens, blocker / "ck", callback=lambda step, h: steps.append(step))
    assert steps == []  # refused when the run starts, not at its first save
    # a read-only folder (as root, chmod does not stop writes: simulate the OS error)
    import utils.checkpoint

    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path.parent))

    monkeypatch.setattr(utils.checkpoint, "make_temp_dir", read_only)
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*not writable.*Permission denied"):
        _run(tokens, tmp_path / "ck", callback=lambda step, h: steps.append(step))
    assert steps == []


@pytest.mark.parametrize("bad", [0, "", 3.5, None])
def test_check_checkpoint_dir_rejects_non_paths(bad):
    with pytest.raises(ValueError, match="checkpoint_dir="):
        check_checkpoint_dir(bad, "checkpoint_dir")


def test_checkpoint_every_must_be_a_whole_number(tmp_path, tokens):
    with pytest.raises(ValueError, match=r"checkpoint_every=1.5 is not valid; accepted: an int >= 0"):
        _run(tokens, tmp_path / "ck", checkpoint_every=1.5)
    with pytest.raises(ValueError, match=r"checkpoint_every=True"):
        _run(tokens, tmp_path / "ck", checkpoint_every=True)


# ------------------------------------------------------------------------------------- divergence


def _diverging_cfg(**kw):
    return TrainConfig(steps=6, **{**CFG, "lr": 1e6, "warmup_steps": 0, **kw})


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, tokens):
    # the repro: before, lr=1e6 trained on through NaN losses and saved NaN weights over the checkpoint
    ck = tmp_path / "ck"
    _run(tokens, ck, steps=2)
    good = load_file(str(ck / "model.safetensors"))
    with pytest.raises(NonFiniteLossError, match=r"step 2: the loss is nan.*Lower the learning rate"):
        train(_model(), _data(tokens), _diverging_cfg(), checkpoint_dir=ck, checkpoint_every=1, progress=False)
    # the step-1 save happened (its weights are finite, only huge); nothing non-finite was ever written
    saved = load_file(str(ck / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in saved.values())
    assert load_checkpoint(ck).step == 1
    assert good.keys() == saved.keys()


def test_skip_mode_skips_non_finite_steps_and_logs_no_nan(tmp_path, tokens):
    model = _model()
    h = train(model, _data(tokens), _diverging_cfg(on_nonfinite="skip"), checkpoint_dir=tmp_path / "ck", progress=False)
    assert h.skipped_steps == [2, 3, 4, 5, 6]  # lr=1e6 wrecks the weights in one step: every later loss is NaN
    assert all(v != v for v in h.loss[1:]) and h.loss[0] > 0  # steps with no finite loss log nan, not a fake mean
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert load_checkpoint(tmp_path / "ck").step == 6


def test_fp16_overflow_steps_skipped_by_the_grad_scaler_do_not_stop_the_run(tokens, monkeypatch):
    # with a GradScaler an inf gradient is routine: it skips the step and lowers its scale
    import utils.train

    scalers = []

    def huge_scale(precision, device):  # 2^40 overflows fp16 gradients at once
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**40))
        return scalers[-1]

    monkeypatch.setattr(utils.train, "grad_scaler", huge_scale)
    model = _model()
    h = train(model, _data(tokens), TrainConfig(steps=4, precision="fp16", **CFG), progress=False)
    assert scalers[0].get_scale() < 2.0**40  # it did overflow and back off
    assert h.skipped_steps == [] and not any(math.isnan(v) for v in h.loss)  # not counted as divergence
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_save_refuses_non_finite_weights_over_a_checkpoint(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "ck", model, step=1)
    before = (tmp_path / "ck" / "model.safetensors").read_bytes()
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"model weight 'transformer.h.0.attn.c_attn.weight'.*NaN"):
        save_checkpoint(tmp_path / "ck", model, step=2)
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == before


def test_grad_norm_nan_without_a_scaler_stops(tokens):
    class NanGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    model = _model()
    block = model.transformer.h[1]
    block.register_forward_hook(lambda mod, inp, out: (NanGrad.apply(out[0]), *out[1:]) if isinstance(out, tuple) else NanGrad.apply(out))
    with pytest.raises(NonFiniteLossError, match="gradient norm is nan"):
        train(model, _data(tokens), TrainConfig(steps=2, **CFG), progress=False)
    with pytest.raises(NonFiniteLossError, match="gradient norm is nan"):  # without clipping too
        train(model, _data(tokens), TrainConfig(steps=2, grad_clip=None, **CFG), progress=False)


# ---------------------------------------------------------------------- interrupted saves, leftovers


def test_a_save_killed_between_its_renames_is_recovered(tmp_path, tokens):
    # the repro: the state a kill between `path -> path.old` and `tmp -> path` leaves
    ck = tmp_path / "ck"
    model = _model()
    train(model, _data(tokens), TrainConfig(steps=6, **CFG), checkpoint_dir=ck, checkpoint_every=2,
          callback=lambda step, h: step == 4, progress=False)  # the run stops after its step-4 save
    reference = _model()
    train(reference, _data(tokens), TrainConfig(steps=6, **CFG), progress=False)
    os.replace(ck, old_path(ck))
    with pytest.warns(UserWarning, match=r"ck\.old.*interrupted"):
        assert load_checkpoint(ck).step == 4  # before: "no checkpoint"
    resumed = _model(seed=5)
    with pytest.warns(UserWarning, match="interrupted"):
        train(resumed, _data(tokens), TrainConfig(steps=6, **CFG), resume_from=ck, checkpoint_dir=ck,
              checkpoint_every=2, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # recovered, then replaced; .old gone
    assert load_checkpoint(ck).step == 6


def test_stale_temporary_folders_of_dead_runs_are_removed(tmp_path):
    ck = tmp_path / "ck"
    stale = tmp_path / f".ck.tmp-{_dead_pid()}-abc"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    mine = make_temp_dir(ck)  # this process is alive: its folder is being written, never touched
    other = tmp_path / ".other.tmp-1-xyz"  # another name's folder: not ours to judge
    other.mkdir()
    save_checkpoint(ck, _model(), step=1)
    assert not stale.exists() and mine.exists() and other.exists()
    assert remove_stale_temp_dirs(ck) == []
    # what earlier versions left (e.g. ~420 MB of a killed SmolLM2 conversion): no pid, removed after a day
    legacy, recent = tmp_path / ".ck.a1b2c3d4", tmp_path / ".ck.recent12"
    legacy.mkdir(), recent.mkdir()
    os.utime(legacy, (time.time() - 2 * 86400,) * 2)
    assert remove_stale_temp_dirs(ck) == [legacy] and recent.exists()


# ------------------------------------------------------------------------------------- integrity


def _saved(tmp_path):
    ck = tmp_path / "ck"
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(ck, model, opt, step=1)
    return ck, model, opt


def _flip(path: Path, offset: int):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_the_weights_are_named_on_load(tmp_path):
    # the repro: before, flipped bytes loaded silently and the model then produced garbage
    ck, model, opt = _saved(tmp_path)
    _flip(ck / "model.safetensors", -100)
    with pytest.raises(ValueError, match=r"model.safetensors.*SHA-256.*damaged"):
        load_checkpoint(ck, _model())


@pytest.mark.parametrize("name", ["state.safetensors", "state.json"])
def test_truncated_or_missing_state_files_are_named(tmp_path, name):
    ck, model, opt = _saved(tmp_path)
    f = ck / name
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match=rf"{name}.*bytes, its manifest says"):
        load_checkpoint(ck, _model())
    f.unlink()
    with pytest.raises(ValueError, match=rf"{name}.*missing"):
        load_checkpoint(ck, _model())


def test_a_folder_without_a_manifest_is_not_loaded(tmp_path):
    ck, model, opt = _saved(tmp_path)
    (ck / "manifest.json").unlink()
    with pytest.raises(ValueError, match=r"manifest.json.*missing or not a course checkpoint manifest"):
        load_checkpoint(ck, _model())


def test_a_different_model_is_a_clear_error(tmp_path):
    ck, model, opt = _saved(tmp_path)
    seed_everything(0)
    other = build_model("decoder", "tiny", vocab_size=V, n_layers=3)
    with pytest.raises(ValueError, match=r"model does not match the checkpoint .*model.safetensors"):
        load_checkpoint(ck, other)


def test_manifest_records_size_and_sha256(tmp_path):
    ck, model, opt = _saved(tmp_path)
    manifest = json.loads((ck / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["model.safetensors", "state.json", "state.safetensors"]
    size = (ck / "model.safetensors").stat().st_size
    assert manifest["files"]["model.safetensors"]["size"] == size
    assert verify_folder(ck, "checkpoint")["format_version"] == 2


# ----------------------------------------------------------------------- SIGKILL at random moments

CHILD = r'''
import sys, types
from pathlib import Path
sys.path.insert(0, {root!r})
import torch
from safetensors.torch import save_file
from utils.checkpoint import old_path
from utils.train import TokenBatches, TrainConfig, train

torch.set_num_threads(1)


class Tiny(torch.nn.Module):  # no transformers import: the child starts in about a second
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(64, 32)
        self.drop = torch.nn.Dropout(0.1)  # so the restored RNG state matters
        self.out = torch.nn.Linear(32, 64)

    def forward(self, input_ids, labels, **_):
        logits = self.out(self.drop(self.emb(input_ids)))[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), labels[:, 1:].reshape(-1))
        return types.SimpleNamespace(loss=loss)


ck, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = Tiny()
tokens = torch.randint(0, 64, (4000,), generator=torch.Generator().manual_seed(0))
data = TokenBatches(tokens, "clm", 4, 16, seed=1)
resume = ck if (ck.exists() or old_path(ck).exists()) else None
cfg = TrainConfig(steps=steps, batch_size=4, lr=1e-2, warmup_steps=2, log_every=3, eval_every=0, device="cpu")
print("ready", flush=True)
history = train(model, data, cfg, resume_from=resume, checkpoint_dir=ck, checkpoint_every=1, progress=False)
save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, str(out))
Path(str(out) + ".loss").write_text(repr(history.loss))
'''


def _child(tmp_path, ck, out, steps, kill_after=None):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ck), str(out), str(steps)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    if kill_after is None:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return True
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return proc.returncode == -signal.SIGKILL  # False: it had finished before the kill


def _in_process(tmp_path, ck, out, steps):
    import runpy

    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    argv, rng = sys.argv, torch.get_rng_state()
    sys.argv = [str(script), str(ck), str(out), str(steps)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
        torch.set_rng_state(rng)


def _kill_and_resume(tmp_path, kills: int, seed: int):
    steps = 30
    ref = tmp_path / "reference.safetensors"
    _in_process(tmp_path, tmp_path / "ref-ck", ref, steps)  # the uninterrupted run (saves a process start)
    ck, out = tmp_path / "ck", tmp_path / "resumed.safetensors"
    rng = random.Random(seed)
    last_step, killed = 0, 0
    for _ in range(kills):
        if _child(tmp_path, ck, out, steps, kill_after=rng.uniform(0.0, 0.6)):
            killed += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a kill between the renames: loading names the .old folder
            if ck.exists() or old_path(ck).exists():
                step = load_checkpoint(ck).step  # always a complete, verified checkpoint
                assert step >= last_step  # never lost what an earlier run had saved
                last_step = step
        if last_step == steps:
            break
    _child(tmp_path, ck, out, steps)  # resume to the end
    reference, resumed = load_file(str(ref)), load_file(str(out))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)  # the resume was exact
    assert Path(str(out) + ".loss").read_text() == Path(str(ref) + ".loss").read_text()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ck."))
    assert leftovers == [] or all(".tmp-" in name for name in leftovers)
    return killed


def test_runs_killed_at_random_moments_resume_exactly(tmp_path):
    assert _kill_and_resume(tmp_path, kills=3, seed=0) >= 1


@pytest.mark.slow
def test_many_runs_killed_at_random_moments_resume_exactly(tmp_path):
    assert _kill_and_resume(tmp_path, kills=30, seed=1) >= 10


CACHE_CHILD = r'''
import os, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from utils.io import save_atomically


class Big:  # a model's save_pretrained: a few files, one large
    def __init__(self, i):
        self.i = i

    def save_pretrained(self, folder):
        Path(folder, "config.json").write_text('{{"i": %d}}' % self.i)
        Path(folder, "model.safetensors").write_bytes(os.urandom(1 << 21))
        Path(folder, "tokenizer.json").write_text("{{}}")


root = Path(sys.argv[1])
print("ready", flush=True)
for i in range(1000):
    save_atomically(root / f"entry-{{i % 3}}", Big(i))
'''


def test_cache_writes_killed_at_random_moments_leave_complete_entries_or_none(tmp_path):
    # integrity under SIGKILL: every entry present verifies; leftovers of a killed writer are removed
    from utils.io import load_cached, store_cached

    script = tmp_path / "cache_child.py"
    script.write_text(CACHE_CHILD.format(root=str(ROOT)))
    cache = tmp_path / "cache"
    cache.mkdir()
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(cache)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        for entry in cache.glob("entry-*"):
            verify_folder(entry, "cache", required=("config.json", "model.safetensors"))
    assert any(cache.glob("entry-*"))
    leftovers = [p for p in cache.iterdir() if p.name.startswith(".")]
    print("leftovers of killed writers:", len(leftovers))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified entry loads without a rebuild warning
        for i in range(3):
            store_cached(cache / f"entry-{i}", type("T", (), {"save_pretrained": lambda self, f: None})())
            assert load_cached(cache / f"entry-{i}", lambda f: True) is True
    assert not any(p.exists() for p in leftovers)  # the killed writers' temporary folders are gone
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []
