"""Two-process DistributedDataParallel training of a DeepSet fed by the budget sampler.

Two CPU processes (gloo backend, loopback only) train the same small float64 ``DeepSet``
through ``RaggedDataset`` -> ``BudgetBatchSampler`` -> ``DataLoader(collate_fn=RaggedCollate)``
-> ``DistributedDataParallel``. The children only record what happened (batch indices,
gradients after the all-reduce, weights); every check runs in the parent, against a single
process that recomputes each step from the recorded weights and the two ranks' batches.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import socket
import time
import traceback
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

import raggedarray as ra

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="needs torch.distributed with the gloo backend",
)

WORLD = 2
TIMEOUT_S = 120  # the whole run, children included; they need a few seconds
LR = 0.1
# One full epoch per phase: (epoch, max_items). On the data below the first plan has an even
# number of batches (no padding), the second an odd one (the plan is padded with its batch 0).
PHASES = [(0, 20), (1, 24)]


def _dataset():
    """40 float64 segments of 3-vectors, lengths 0..8 (some empty), one target each."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, 40)
    lengths[[3, 17, 29]] = 0
    values = torch.from_numpy(rng.standard_normal((int(lengths.sum()), 3)))
    targets = torch.from_numpy(rng.standard_normal(40))
    return ra.data.RaggedDataset(ra.RaggedArray.from_lengths(values, lengths), targets=targets)


def _model():
    torch.manual_seed(0)
    psi = nn.Sequential(nn.Linear(3, 8), nn.Tanh())
    return ra.nn.DeepSet(psi, nn.Linear(8, 1), pool="mean").double()


def _loss(model, batch):
    x, y = batch
    return ((model(x).squeeze(1) - y) ** 2).mean()  # a mean over the batch's segments


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _grads(module):
    return {k: p.grad.detach().clone() for k, p in module.named_parameters()}


def _worker(rank, port, out):
    """One rank: train every phase, write what it saw to ``out/rank{rank}.pt``."""
    out = Path(out)
    try:
        torch.set_num_threads(1)
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group(
            "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60)
        )
        ds = _dataset()
        model = _model()
        initial = _state(model)
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=LR)
        auto = ra.data.BudgetBatchSampler(ds, max_items=PHASES[0][1], seed=0)
        result = {
            "initial": initial,
            "auto": (auto.num_replicas, auto.rank, list(auto)),
            "phases": [],
        }
        for epoch, max_items in PHASES:
            sampler = ra.data.BudgetBatchSampler(
                ds.lengths, max_items=max_items, num_replicas=WORLD, rank=rank, seed=0
            )
            sampler.set_epoch(epoch)
            loader = DataLoader(
                ds, batch_sampler=sampler, collate_fn=ra.data.RaggedCollate(ragged=0)
            )
            steps = []
            for idx, batch in zip(sampler, loader, strict=True):
                before = _state(model)
                opt.zero_grad()
                _loss(ddp, batch).backward()
                steps.append(
                    {
                        "idx": idx,
                        "lengths": batch[0].host_lengths.tolist(),
                        "targets": batch[1].clone(),
                        "before": before,
                        "grads": _grads(model),
                    }
                )
                opt.step()
                steps[-1]["after"] = _state(model)
            result["phases"].append({"len": len(sampler), "steps": steps})
        torch.save(result, out / f"rank{rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(tmp_path, monkeypatch):
    """Run ``_worker`` on every rank in fresh processes; their results, or a clean failure."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if "lo" in {name for _, name in socket.if_nameindex()}:
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # keep gloo's traffic on loopback
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(rank, port, str(tmp_path)), daemon=True)
        for rank in range(WORLD)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for p in procs:
            p.start()
        # Wait for all of them, but stop at the deadline or as soon as one fails (its peer
        # would otherwise wait in a collective until gloo's own timeout).
        while (alive := [p for p in procs if p.is_alive()]) and time.monotonic() < deadline:
            if any(p.exitcode not in (None, 0) for p in procs):
                break
            wait([p.sentinel for p in alive], timeout=max(deadline - time.monotonic(), 0))
    finally:
        hung = [rank for rank, p in enumerate(procs) if p.is_alive()]
        late = time.monotonic() >= deadline
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
    errors = "".join(
        f"\n--- rank {rank} ---\n{path.read_text()}"
        for rank in range(WORLD)
        if (path := tmp_path / f"rank{rank}.err").exists()
    )
    codes = [p.exitcode for p in procs]
    if errors or any(code != 0 for code in codes):
        why = f"timed out after {TIMEOUT_S} s" if late else "a peer failed"
        timed_out = f" (ranks {hung} killed: {why})" if hung else ""
        pytest.fail(f"distributed run failed: exit codes {codes}{timed_out}{errors}")
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]


def _assert_states_equal(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def _prefixed(label):
    return lambda message: f"{label}: {message}"


def test_ddp_with_budget_sampler_matches_a_single_process(tmp_path, monkeypatch):
    results = _run_ranks(tmp_path, monkeypatch)
    ds = _dataset()
    n = len(ds)
    _assert_states_equal(results[0]["initial"], results[1]["initial"], "initial weights")

    # num_replicas=None / rank=None inside the process group: world size 2 and the rank.
    for rank, res in enumerate(results):
        replicas, got_rank, batches = res["auto"]
        assert (replicas, got_rank) == (WORLD, rank)
        explicit = ra.data.BudgetBatchSampler(
            ds.lengths, max_items=PHASES[0][1], num_replicas=WORLD, rank=rank, seed=0
        )
        assert batches == list(explicit)

    single = _model()
    step_count = 0
    parities = set()
    for p, (epoch, max_items) in enumerate(PHASES):
        phases = [res["phases"][p] for res in results]
        steps = [ph["steps"] for ph in phases]

        # Same number of steps on both ranks, matching len(sampler).
        assert len(steps[0]) == len(steps[1]) == phases[0]["len"] == phases[1]["len"] >= 3

        # Coverage: the plan (what one replica gets), padded by repeating whole batches from
        # its start, is dealt out round robin: rank r gets batches r, r + 2, ...
        one = ra.data.BudgetBatchSampler(ds.lengths, max_items=max_items, seed=0)
        one.set_epoch(epoch)
        plan = list(one)
        pad = -len(plan) % WORLD
        parities.add(pad)
        padded = plan + plan[:pad]
        for rank in range(WORLD):
            assert [s["idx"] for s in steps[rank]] == padded[rank::WORLD]
        seen = Counter(i for rank in range(WORLD) for s in steps[rank] for i in s["idx"])
        assert sorted(i for b in plan for i in b) == list(range(n))  # the plan: each once
        assert seen == Counter(range(n)) + Counter(i for b in plan[:pad] for i in b)
        if pad == 0:
            assert seen == Counter(range(n))

        # The loader delivered exactly the sampler's segments, in its order.
        for rank_steps in steps:
            for s in rank_steps:
                assert s["lengths"] == ds.lengths[s["idx"]].tolist()
                assert torch.equal(s["targets"], ds.targets[s["idx"]])

        # Gradients after the all-reduce: the average of the two ranks' losses' gradients,
        # recomputed here by one process from the weights both ranks started the step with.
        for t, (s0, s1) in enumerate(zip(*steps, strict=True)):
            where = f"epoch {epoch}, step {t}"
            _assert_states_equal(s0["before"], s1["before"], f"weights before {where}")
            single.load_state_dict(s0["before"])
            single.zero_grad()
            batches = [ra.collate([ds[i] for i in s["idx"]], ragged=0) for s in (s0, s1)]
            (0.5 * (_loss(single, batches[0]) + _loss(single, batches[1]))).backward()
            expected = _grads(single)
            for rank, s in enumerate((s0, s1)):
                assert s["grads"].keys() == expected.keys()
                for k, g in expected.items():
                    label = f"{where}, rank {rank}, {k}"
                    torch.testing.assert_close(
                        s["grads"][k], g, rtol=1e-10, atol=1e-10, msg=_prefixed(f"grad {label}")
                    )
                    torch.testing.assert_close(
                        s["after"][k],
                        s["before"][k] - LR * g,
                        rtol=1e-10,
                        atol=1e-10,
                        msg=_prefixed(f"SGD step {label}"),
                    )
            _assert_states_equal(s0["after"], s1["after"], f"weights after {where}")
            step_count += 1

    assert step_count >= 3
    assert parities == {0, 1}, "the phases should cover both an even and an odd (padded) plan"
    # The weights really moved: the run is not vacuously equal.
    final = results[0]["phases"][-1]["steps"][-1]["after"]
    assert not torch.equal(final["phi.weight"], results[0]["initial"]["phi.weight"])
