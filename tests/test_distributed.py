"""Multi-process training (gloo on CPU): two ranks against a single-process run with the same global batch,
the same masks on every rank, a wiring mismatch turned into an error, the batch sharding by hand, and
``torchrun -m neuralgraphs train`` end to end."""

import csv
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from neuralgraphs.dynamics import StaticGraph
from neuralgraphs.generators.candidates import blocked_dag
from neuralgraphs.nodes import Activation
from neuralgraphs.train import digits_loaders, fit
from neuralgraphs.train.distributed import ShardedBatchSampler, active_checksum

EPOCHS, BATCH = 2, 64


def _model():
    """A classifier without batch statistics (BatchNorm stays per rank under DDP): 64 pixel nodes, 16 hidden,
    10 output nodes read as the logits."""
    torch.manual_seed(0)
    graph = blocked_dag([64, 16, 10])
    return StaticGraph(graph, Activation("tanh"), wiring="dnw", k=300, seed=0)


def _loaders():
    train, test = digits_loaders(BATCH, seed=0, as_images=False)
    return train, test


class _Perturb:
    """On rank 1 only, at step 3: push 20 inactive candidates to the top of |w| (a wiring the ranks no longer
    share)."""

    def on_step_end(self, model, step, loss):
        if step == 3 and dist.get_rank() == 1:
            with torch.no_grad():
                inactive = torch.ones(model.weight.numel(), dtype=torch.bool)
                inactive[model.active().index] = False
                model.weight[inactive.nonzero().view(-1)[:20]] = 10.0


def _worker(rank, world, folder, mode):
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = _model()
        train, test = _loaders()
        callbacks = [_Perturb()] if mode == "diverge" else []
        try:
            history = fit(model, train, test, epochs=EPOCHS, lr=0.05, seed=0, progress=False,
                          callbacks=callbacks, wiring_check_every=5,
                          checkpoint=os.path.join(folder, "c.pt") if mode == "same" else None)
            result = {"history": history, "weight": model.weight.detach().clone(),
                      "active": model.active().index.clone()}
        except RuntimeError as exc:
            result = {"error": str(exc)}
        torch.save(result, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path, mode):
    mp.spawn(_worker, args=(2, str(tmp_path), mode), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture
def one_thread():
    """The ranks' thread count for the single-process reference, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_two_ranks_train_like_one_process_with_the_same_global_batch(tmp_path, one_thread):
    ranks = _spawn(tmp_path, "same")
    model = _model()
    train, test = _loaders()
    single = fit(model, train, test, epochs=EPOCHS, lr=0.05, seed=0, progress=False)
    for r in ranks:
        assert "error" not in r, r.get("error")
        # the same masks on both ranks, and the single-process run's
        assert torch.equal(r["active"], ranks[0]["active"]) and torch.equal(r["active"], model.active().index)
        torch.testing.assert_close(r["weight"], model.weight.detach(), rtol=1e-4, atol=1e-5)
        assert r["history"]["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
        assert r["history"]["train_acc"] == pytest.approx(single["train_acc"], abs=1e-9)
        assert r["history"]["test_acc"] == pytest.approx(single["test_acc"], abs=1e-9)
    # rank 0 wrote the checkpoint, with the world size a resume must repeat
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert saved["run"]["world_size"] == 2 and saved["epoch"] == EPOCHS
    with pytest.raises(ValueError, match="world_size=2, this call has world_size=1"):
        fit(_model(), *_loaders(), epochs=EPOCHS, lr=0.05, seed=0, progress=False,
            checkpoint=tmp_path / "c.pt", resume=True)


def test_a_rank_with_another_wiring_is_an_error_naming_the_step(tmp_path):
    ranks = _spawn(tmp_path, "diverge")
    for r in ranks:
        assert "error" in r
        assert "the ranks' active edges differ at step 5" in r["error"]


def test_sharded_batches_are_the_single_process_batches_dealt_out():
    data = TensorDataset(torch.arange(23))
    gen = torch.Generator().manual_seed(3)
    sampler = RandomSampler(data, generator=gen)
    gen.manual_seed(3)
    order = list(sampler)  # the permutation a single process would batch as 5 + 5 + 5 + 5 + 3
    gen.manual_seed(3)
    shard0 = list(ShardedBatchSampler(sampler, 5, 0, 2))
    gen.manual_seed(3)
    shard1 = list(ShardedBatchSampler(sampler, 5, 1, 2))
    batches = [order[i:i + 5] for i in range(0, 23, 5)]
    assert shard0 == [b[0::2] for b in batches] and shard1 == [b[1::2] for b in batches]
    assert len(ShardedBatchSampler(sampler, 5, 0, 2)) == 5
    with pytest.raises(ValueError, match="last global batch of 1 samples"):
        ShardedBatchSampler(RandomSampler(TensorDataset(torch.arange(21))), 5, 0, 2)
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchSampler(sampler, 5, 2, 2)
    with pytest.raises(ValueError, match="batch_size"):
        ShardedBatchSampler(sampler, 1, 0, 2)


def test_active_checksum_tells_wirings_apart():
    a, b = _model(), _model()
    assert torch.equal(active_checksum(a), active_checksum(b))
    with torch.no_grad():
        inactive = torch.ones(b.weight.numel(), dtype=torch.bool)
        inactive[b.active().index] = False
        b.weight[inactive.nonzero().view(-1)[0]] = 100.0  # one edge in, the smallest out: same count
    ca, cb = active_checksum(a), active_checksum(b)
    assert ca[1] == cb[1] == 300 and ca[0] != cb[0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_torchrun_train_writes_from_rank_0_and_refuses_another_world_size(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "neuralgraphs", "train", "digits-static-dnw", "train.epochs=1", "--out", str(tmp_path / "two")]
    proc = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test accuracy") == 1  # rank 0 reports, rank 1 does not
    rows = _rows(tmp_path / "two" / "metrics.csv")
    assert len(rows) == 1 and (tmp_path / "two" / "wiring.html").is_file()
    single = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "neuralgraphs", "train", "digits-static-dnw", "train.epochs=1", "--out",
                    str(single)], env=env, check=True, capture_output=True, timeout=300)
    one = _rows(single / "metrics.csv")
    # the stem's BatchNorm keeps per-rank statistics, which the nodes' instance norm all but removes
    assert float(rows[0]["train_loss"]) == pytest.approx(float(one[0]["train_loss"]), rel=1e-5)
    # resuming the two-rank run in one process is refused, naming the world size
    proc = subprocess.run([sys.executable, "-m", "neuralgraphs", "train", "digits-static-dnw", "train.epochs=1",
                           "--out", str(tmp_path / "two"), "--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "world_size=2" in proc.stderr
