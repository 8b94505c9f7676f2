"""Lab 1 (memory budget): the cases, the checks and the hints, built on :mod:`utils.labs`.

The learner writes ``training_bytes(model, optimizer)`` (count what a real training step keeps), explains
the gap between that count and :func:`utils.memory.training_memory`, writes ``per_gpu_bytes(plan)`` (the
memory one GPU needs under a training plan), and picks a plan that fits the scenario below. The references
are :mod:`utils.memory_measure` and :mod:`utils.memory`, called when a check runs; nothing here returns
an expected value.
"""

from __future__ import annotations

import torch

from utils.env import has_package, import_bitsandbytes, seed_everything
from utils.labs import Result, case, check_function, check_value, close
from utils.memory import (
    GPT3_SHAPES,
    GPT3_VOCAB_SIZE,
    OPTIMIZERS,
    PRECISIONS,
    RECOMPUTE,
    ZERO_STAGES,
    GiB,
    activation_memory,
    training_memory,
    zero_memory_per_device,
)
from utils.memory_measure import gradient_bytes, optimizer_state_bytes, parameter_bytes, storage_bytes
from utils.models import build_model

# ---------------------------------------------------------------------------------------------------------
# Part A: count the bytes of a real training step
# ---------------------------------------------------------------------------------------------------------

#: The keys ``training_bytes`` returns, each in bytes.
PARTS = ("parameters", "gradients", "optimizer")


def one_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, seed: int = 0):
    """One real training step (forward, backward, ``optimizer.step()``; gradients are kept). Returns both."""
    torch.manual_seed(seed)
    first = next(model.parameters())
    if hasattr(model, "config"):  # a causal LM from utils.models: next-token loss on random ids
        ids = torch.randint(0, model.config.vocab_size, (2, 16))
        loss = model(input_ids=ids, labels=ids).loss
    else:
        x = torch.randn(4, model[0].in_features, dtype=first.dtype)
        loss = model(x).float().pow(2).mean()
    loss.backward()
    optimizer.step()
    return model, optimizer


def decoder_after_one_step(optimizer: str = "adamw", seed: int = 0):
    """The course's tiny decoder (GPT-2 shape, tied embeddings) after one step with ``optimizer``
    ("adamw" or "sgd", momentum 0.9). Returns ``(model, optimizer)``."""
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer={optimizer!r} is not valid; accepted: 'adamw' or 'sgd'")
    seed_everything(seed)
    model = build_model("decoder", "tiny")
    opt = (torch.optim.AdamW(model.parameters(), lr=1e-3) if optimizer == "adamw"
           else torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9))
    return one_step(model, opt, seed)


def _mlp(dtype=torch.float32, width: int = 96) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(48, width), torch.nn.ReLU(), torch.nn.Linear(width, 8)).to(dtype)


def training_cases() -> list:
    """The (model, optimizer) pairs ``training_bytes`` is checked on, each after one real step."""
    seed_everything(0)
    cases = []
    m = _mlp()
    cases.append(case(*one_step(m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)),
                      label="small MLP, SGD with momentum"))
    m = _mlp()
    cases.append(case(*one_step(m, torch.optim.SGD(m.parameters(), lr=0.1)),
                      label="SGD without momentum: no optimizer state"))
    cases.append(case(*decoder_after_one_step("adamw"), label="the course's decoder, tied embeddings, AdamW"))
    m = _mlp()
    m[0].requires_grad_(False)
    cases.append(case(*one_step(m, torch.optim.Adam([p for p in m.parameters() if p.requires_grad])),
                      label="first layer frozen, Adam"))
    m = _mlp(torch.bfloat16)
    cases.append(case(*one_step(m, torch.optim.Adam(m.parameters())), label="bf16 weights, Adam"))
    if has_package("bitsandbytes"):
        # two weight matrices above bitsandbytes' 4096-value threshold: 8-bit states sharing one quantisation map
        m = torch.nn.Sequential(torch.nn.Linear(48, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
        opt = import_bitsandbytes().optim.Adam8bit(m.parameters())
        cases.append(case(*one_step(m, opt), label="bitsandbytes 8-bit Adam (a quantisation map shared by "
                                                    "several parameters' states)"))
    return cases


def _reference_training_bytes(model, optimizer) -> dict:
    return {"parameters": parameter_bytes(model), "gradients": gradient_bytes(model),
            "optimizer": optimizer_state_bytes(optimizer, include_scalars=True)}


def _counted_twice(model, optimizer) -> dict:  # the same sums without counting shared storage once
    states = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return {"parameters": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
            "optimizer": sum(t.numel() * t.element_size() for t in states)}


def _hint_key(key: str, wrong):
    def predicate(got, expected, c):
        return not close(got[key], expected[key]) and close(got[key], wrong(*c.args)[key])
    return predicate


TRAINING_HINTS = [
    (lambda got, exp, c: close(got["optimizer"], optimizer_state_bytes(c.args[1])) and got["optimizer"] > 0,
     "optimizer state: every tensor in optimizer.state counts, including the 0-dim ones (Adam's step)"),
    (_hint_key("optimizer", _counted_twice),
     "one tensor can appear in several parameters' states: count memory once per storage "
     "(tensor.untyped_storage().data_ptr() tells you whether two tensors share it)"),
    (_hint_key("parameters", _counted_twice),
     "a tied weight appears twice in state_dict(); model.parameters() yields it once"),
    (lambda got, exp, c: got["gradients"] > exp["gradients"],
     "gradients: frozen parameters (requires_grad=False) have no .grad"),
    (lambda got, exp, c: any(close(got[k], exp[k] * 2) or close(got[k] * 2, exp[k]) for k in PARTS),
     "bytes per value depend on the dtype: tensor.element_size() gives them"),
]


def check_training_bytes(training_bytes, *, time_limit_s: float = 10.0) -> Result:
    """Check the learner's ``training_bytes(model, optimizer) -> {"parameters", "gradients", "optimizer"}``."""
    return check_function(training_bytes, _reference_training_bytes, training_cases(), name="training_bytes",
                          rtol=0, time_limit_s=time_limit_s, hints=TRAINING_HINTS)


def check_formula_gap(gap_bytes) -> Result:
    """Check the learner's measured-minus-formula bytes for :func:`decoder_after_one_step` ("adamw")."""
    model, opt = decoder_after_one_step("adamw")
    measured = storage_bytes(model.parameters()) + gradient_bytes(model) + optimizer_state_bytes(opt, True)
    n = sum(p.numel() for p in model.parameters())
    formula = training_memory(n, optimizer="adamw", activation_bytes_per_param=0).model_states
    hints = [
        (lambda a, e, c: close(a, 0, atol=0.5),
         "look again at what your count includes that the per-parameter formula cannot: per-tensor extras"),
        (lambda a, e, c: close(abs(a), e) and a < 0, "the gap is measured minus formula"),
        (lambda a, e, c: a > 1000 * abs(e) + 1,
         "that is far more than bookkeeping: did both sides count the same parameters (tied embeddings once)?"),
        (lambda a, e, c: close(a * 4, e), "that looks like a number of tensors: the gap is in bytes"),
    ]
    return check_value(gap_bytes, measured - formula, name="formula_gap", rtol=0, atol=0.5, hints=hints)


# ---------------------------------------------------------------------------------------------------------
# Part B: plan a run that fits
# ---------------------------------------------------------------------------------------------------------

#: The scenario of part B (the problem statement, not an answer).
SCENARIO = {
    "model": "GPT-3 6.7B",  # a key of utils.memory.GPT3_SHAPES
    "n_gpus": 8,  # data-parallel GPUs
    "seq_len": 2048,  # tokens per sequence
    "global_batch": 512,  # sequences per optimizer step, all GPUs together
    "memory_limit_gib": 72,  # usable memory per GPU (an 80 GiB card less 10% for the CUDA context etc.)
    "max_micro_steps": 16,  # gradient-accumulation micro-steps per optimizer step, at most
    "optimizers": ("adam", "adamw", "adam8bit"),  # the run must use Adam (any of these implementations)
}
PLAN_KEYS = ("precision", "optimizer", "zero_stage", "recompute", "micro_batch")


def _plan_error(plan) -> str | None:
    """Why ``plan`` cannot be evaluated (wrong keys or values), or None."""
    if not isinstance(plan, dict):
        return f"a plan is a dict with keys {PLAN_KEYS}, got a {type(plan).__name__}"
    if set(plan) != set(PLAN_KEYS):
        return f"a plan has exactly the keys {PLAN_KEYS}, got {tuple(plan)}"
    for key, accepted in (("precision", tuple(PRECISIONS)), ("optimizer", tuple(OPTIMIZERS)),
                          ("zero_stage", ZERO_STAGES), ("recompute", RECOMPUTE)):
        if plan[key] not in accepted or isinstance(plan[key], bool):
            return f"plan[{key!r}]={plan[key]!r} is not valid; accepted: {accepted}"
    mb = plan["micro_batch"]
    if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
        return f"plan['micro_batch']={mb!r} is not valid; accepted: an int >= 1"
    return None


def _per_gpu_bytes(plan, *, logits: bool = True, fp32_acts: bool = True, zero: bool = True,
                   activations: bool = True) -> float:
    """The reference: ZeRO-sharded model states + the activations of one micro-batch (flags: hint variants)."""
    g = GPT3_SHAPES[SCENARIO["model"]]
    p, o = PRECISIONS[plan["precision"]], OPTIMIZERS[plan["optimizer"]]
    states = zero_memory_per_device(g.n_params, SCENARIO["n_gpus"], plan["zero_stage"] if zero else 0,
                                    p.master + o.state_bytes, weight_bytes=p.weights, gradient_bytes=p.gradients)
    acts = activation_memory(
        seq_len=SCENARIO["seq_len"], batch_size=plan["micro_batch"], hidden_size=g.hidden_size,
        n_layers=g.n_layers, n_heads=g.n_heads, recompute=plan["recompute"],
        bytes_per_value=4 if plan["precision"] == "fp32" and fp32_acts else 2,
        vocab_size=GPT3_VOCAB_SIZE if logits else None,
    )
    return states + (acts.total if activations else 0.0)


def plan_cases() -> list:
    """The plans ``per_gpu_bytes`` is checked on: every precision, optimizer, stage and recomputation."""
    plans = [
        ("mixed", "adamw", 3, "selective", 4), ("fp32", "adam", 0, "none", 1), ("mixed-hf", "adam", 1, "full", 8),
        ("mixed", "adam8bit", 2, "flash", 2), ("fp32", "sgd", 3, "full", 16), ("mixed", "adam", 1, "none", 1),
        ("mixed-hf", "adamw", 2, "selective", 32), ("fp32", "adam8bit", 1, "selective", 4),
    ]
    return [case(dict(zip(PLAN_KEYS, p)), label=", ".join(map(str, p))) for p in plans]


def _variant(**flags):
    return lambda got, exp, c: close(got, _per_gpu_bytes(c.args[0], **flags), rtol=1e-6)


PLAN_HINTS = [
    (_variant(activations=False), "that is the model states alone: one micro-batch's activations are in memory too"),
    (_variant(logits=False), "the output layer's logits (fp32, one value per token and vocabulary entry) count too"),
    (_variant(fp32_acts=False), "with fp32 training the activations are fp32 too (activation_memory's bytes_per_value)"),
    (_variant(zero=False), "the ZeRO stage decides which model states are divided over the GPUs"),
    (lambda got, exp, c: close(got, exp, rtol=0.01),
     "close: check the bytes per value you pass for weights, gradients and optimizer states (utils.memory.PRECISIONS)"),
]


def check_per_gpu_bytes(per_gpu_bytes, *, time_limit_s: float = 10.0) -> Result:
    """Check the learner's ``per_gpu_bytes(plan)`` on many plans against :mod:`utils.memory`."""
    return check_function(per_gpu_bytes, _per_gpu_bytes, plan_cases(), name="per_gpu_bytes", rtol=1e-6,
                          time_limit_s=time_limit_s, hints=PLAN_HINTS)


def check_plan(plan) -> Result:
    """Check a plan for :data:`SCENARIO`: valid, an Adam optimizer, whole micro-batches, few enough
    micro-steps, and a fit in the memory limit. Any plan meeting all of these is correct."""
    name = "plan"
    if plan is None or plan is Ellipsis:
        return Result("not done yet", "not done yet -- replace None with your plan (a dict) and run the cell again",
                      name=name)
    why = _plan_error(plan)
    if why:
        return Result("invalid", why, name=name)
    per_gpu = SCENARIO["global_batch"] // SCENARIO["n_gpus"]
    if plan["optimizer"] not in SCENARIO["optimizers"]:
        return Result("wrong", f"the run must train with Adam; {plan['optimizer']!r} is not one of "
                               f"{SCENARIO['optimizers']}", name=name)
    if per_gpu % plan["micro_batch"]:
        return Result("wrong", f"each GPU processes {per_gpu} sequences per step: micro_batch="
                               f"{plan['micro_batch']} does not divide them into whole micro-steps", name=name)
    steps = per_gpu // plan["micro_batch"]
    if steps > SCENARIO["max_micro_steps"]:
        return Result("wrong", f"micro_batch={plan['micro_batch']} needs {steps} micro-steps per optimizer step, "
                               f"more than the {SCENARIO['max_micro_steps']} allowed", name=name,
                      hint="a larger micro-batch needs more activation memory: what else can make room?")
    need = _per_gpu_bytes(plan)
    limit = SCENARIO["memory_limit_gib"] * GiB
    if need > limit:
        return Result("wrong", f"this plan needs {need / GiB:,.1f} GiB per GPU, more than the "
                               f"{SCENARIO['memory_limit_gib']} GiB limit", name=name,
                      hint="compare the model states and the activations of your plan: shrink the larger one")
    return Result("correct", f"fits: {need / GiB:,.1f} GiB of {SCENARIO['memory_limit_gib']} GiB per GPU, "
                             f"{steps} micro-step(s) per optimizer step", name=name)

