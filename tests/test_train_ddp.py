"""`train.fit` under DistributedDataParallel: 2 CPU processes (gloo) give the losses and weights of one process
with the same global batch (grad_accum × world micro-batches per step)."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llava_mini.stages import freeze
from llava_mini.train import TrainConfig, distributed, fit
from test_train import batch, tiny_model

WORLD = 2
LENGTHS = [(2, 9, 3), (12, 1), (5, 5, 7, 2), (3,), (8, 4), (6, 1, 1), (10, 2), (4, 4, 4)]  # unequal answer counts


def stream(steps: int, per_step: int):
    """The seeded stream of micro-batches (the same on every rank): unequal supervised tokens per batch."""
    for i in range(steps * per_step):
        yield batch(LENGTHS[i % len(LENGTHS)], seed=i)


def train(grad_accum: int, steps: int, count: bool, world: int) -> tuple[list[float], dict]:
    model = tiny_model()
    freeze(model, 2)
    cfg = TrainConfig(steps=steps, grad_accum=grad_accum, lr=1e-2, warmup=0.25, device="cpu", log_every=0,
                      progress=False)
    kwargs = {} if count else {"count_fn": None}
    history = fit(model, stream(steps, grad_accum * world), cfg, **kwargs)
    return history, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, grad_accum: int, steps: int, count: bool, out: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        assert distributed() == (rank, WORLD)
        history, state = train(grad_accum, steps, count, WORLD)
        if rank == 0:
            torch.save({"history": history, "state": state}, out)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("grad_accum, count", [(1, True), (2, True), pytest.param(1, False, marks=pytest.mark.slow)],
                         ids=["token-count", "token-count-accum", "mean-loss"])  # about 11 s each
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, grad_accum, count):
    steps, out = 3, str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(free_port(), grad_accum, steps, count, out), nprocs=WORLD, join=True)
    ddp = torch.load(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert distributed() == (0, 1)
        history, state = train(grad_accum * WORLD, steps, count, 1)
    finally:
        torch.set_num_threads(threads)
    assert len(ddp["history"]) == steps
    torch.testing.assert_close(torch.tensor(ddp["history"]), torch.tensor(history), rtol=1e-5, atol=1e-6)
    assert ddp["state"].keys() == state.keys()
    moved = 0
    for name, value in state.items():
        torch.testing.assert_close(ddp["state"][name], value, rtol=1e-5, atol=1e-6, msg=name)
        moved += not torch.equal(value, tiny_model().state_dict()[name])
    assert moved > 0  # the comparison is about trained weights


@pytest.mark.slow  # two stage-1 data builds at once: about a minute on 2 cores
def test_torchrun_launch_of_the_train_command_equals_one_process(tmp_path):
    """`torchrun -m llava_mini.cli train` (2 CPU processes, gloo) writes the W of one process with --grad-accum 2."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    common = ["train", "--stage", "1", "--steps", "3", "--batch-size", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                    str(free_port()), "-m", "llava_mini.cli", *common, "--out", "ddp"],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "llava_mini.cli", *common, "--grad-accum", "2", "--out", "one"],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    ddp, one = (load_file(tmp_path / name / "model.safetensors") for name in ("ddp", "one"))
    assert ddp.keys() == one.keys() and "projector.weight" in ddp
    for name in ddp:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
