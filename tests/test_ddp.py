"""Distributed data parallel training (issue #9): 2 gloo ranks on CPU against one process.

Each rank writes per-step parameter / EMA hashes to KDP_DDP_DEBUG_DIR; the ranks must agree at every
step. A 2-rank run (4 conditions per rank) and a 1-process run (8 conditions) share the global batch and
must reach a similar loss; checkpoints resume across a changed world size; SIGTERM to one rank stops all.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import kdp_cmd

TINY = {"model": {"mlp_hidden": 64, "mlp_layers": 2}, "data": {"horizon": 8},
        "optim": {"conditions": 4, "samples": 4, "positives": 8, "warmup": 5},
        "log_every": 10, "checkpoint_every": 10}


def torchrun(nproc, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "kdp_edge.train", *args]


def rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_run, cli_env):
    d = tmp_path_factory.mktemp("ddp")
    cfg = d / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    one = dict(TINY, optim=dict(TINY["optim"], conditions=8))  # same global batch in one process
    cfg1 = d / "tiny1.json"
    cfg1.write_text(json.dumps(one))
    return {"dir": d, "data": tiny_run.parent / "umaze.hdf5", "cfg": cfg, "cfg1": cfg1}


@pytest.fixture(scope="module")
def ddp_run(setup, cli_env):
    """30 steps on 2 ranks through `kdp-edge train --nproc 2`, with per-step debug hashes."""
    d = setup["dir"]
    env = dict(cli_env, KDP_DDP_DEBUG_DIR=str(d / "dbg2"))
    t0 = time.perf_counter()
    r = subprocess.run(kdp_cmd("train", "--nproc", "2", "--data", str(setup["data"]), "--out", str(d / "run2"),
                               "--config", str(setup["cfg"]), "--steps", "30", "--threads", "1", "--quiet"),
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"2-rank 30 steps: {time.perf_counter() - t0:.1f}s wall")
    return {"run": d / "run2", "dbg": d / "dbg2", "stderr": r.stderr}


def test_ranks_stay_identical(ddp_run):
    r0, r1 = rows(ddp_run["dbg"] / "rank0.jsonl"), rows(ddp_run["dbg"] / "rank1.jsonl")
    assert [x["step"] for x in r0] == [x["step"] for x in r1] == list(range(1, 31))
    assert {x["world"] for x in r0 + r1} == {2}
    for a, b in zip(r0, r1, strict=True):
        assert a["params"] == b["params"] and a["ema"] == b["ema"], a["step"]
    assert len({x["params"] for x in r0}) == 30  # and the parameters do move
    # each rank drew its own conditions / noise: the local losses differ
    assert sum(a["loss"] != b["loss"] for a, b in zip(r0, r1, strict=True)) >= 25
    # rank 0 alone logs, writes metrics and checkpoints
    assert [m["step"] for m in rows(ddp_run["run"] / "metrics.jsonl")] == [10, 20, 30]
    assert json.loads((ddp_run["run"] / "run.json").read_text())["step"] == 30
    assert ddp_run["stderr"].count("done: 30 steps") == 1
    assert "distributed: 2 ranks (gloo, cpu), 4 conditions per rank" in ddp_run["stderr"]


def test_two_ranks_match_one_process(setup, ddp_run, cli_env):
    d = setup["dir"]
    env = dict(cli_env, KDP_DDP_DEBUG_DIR=str(d / "dbg1"))
    r = subprocess.run(kdp_cmd("train", "--data", str(setup["data"]), "--out", str(d / "run1"), "--config",
                               str(setup["cfg1"]), "--steps", "30", "--threads", "1", "--quiet"),
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    one = rows(d / "dbg1" / "rank0.jsonl")
    assert {x["world"] for x in one} == {1} and len(one) == 30
    two = [rows(ddp_run["dbg"] / f"rank{k}.jsonl") for k in (0, 1)]
    loss1 = sum(x["loss"] for x in one[20:]) / 10
    loss2 = sum(a["loss"] + b["loss"] for a, b in zip(two[0][20:], two[1][20:], strict=True)) / 20
    first1, first2 = one[0]["loss"], (two[0][0]["loss"] + two[1][0]["loss"]) / 2
    print(f"loss, mean of steps 21-30: 1 process (8 conditions) {loss1:.4f}, 2 ranks x 4 conditions {loss2:.4f}; "
          f"step 1: {first1:.4f} vs {first2:.4f}")
    assert math.isfinite(loss1) and math.isfinite(loss2)
    assert 0.67 < loss2 / loss1 < 1.5
    # the logged (rank-averaged) loss is the same quantity as the single-process one
    m2, m1 = rows(ddp_run["run"] / "metrics.jsonl")[-1], rows(d / "run1" / "metrics.jsonl")[-1]
    assert 0.67 < m2["loss"] / m1["loss"] < 1.5


def test_resume_across_world_sizes(setup, ddp_run, cli_env):
    # a 2-rank checkpoint resumes in one process ...
    run = ddp_run["run"]
    r = subprocess.run(kdp_cmd("train", "--resume", "--out", str(run), "--steps", "35", "--threads", "1", "--quiet"),
                       env=cli_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stderr and json.loads((run / "run.json").read_text())["step"] == 35
    assert [m["step"] for m in rows(run / "metrics.jsonl")] == [10, 20, 30, 35]
    # ... and that single-process checkpoint resumes on 2 ranks (RNG re-derived from seed, rank, step)
    env = dict(cli_env, KDP_DDP_DEBUG_DIR=str(setup["dir"] / "dbg3"))
    r = subprocess.run(torchrun(2, "--resume", "--out", str(run), "--steps", "40", "--threads", "1", "--quiet"),
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["step"] == 40
    r0, r1 = rows(setup["dir"] / "dbg3" / "rank0.jsonl"), rows(setup["dir"] / "dbg3" / "rank1.jsonl")
    assert [x["step"] for x in r0] == list(range(36, 41))
    assert [x["params"] for x in r0] == [x["params"] for x in r1]


def _env_of(pid: int) -> dict[str, str]:
    """A process's environment, from /proc (Linux)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode(errors="replace").split("=", 1) for x in raw if b"=" in x)


def test_sigterm_to_one_rank_stops_all(setup, cli_env):
    """SIGTERM to rank 1 only: the ranks agree to stop at the same step, rank 0 saves, nobody hangs."""
    run = setup["dir"] / "run-sig"
    proc = subprocess.Popen(torchrun(2, "--data", str(setup["data"]), "--out", str(run), "--config",
                                     str(setup["cfg"]), "--steps", "100000", "--threads", "1", "--quiet"),
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (run / "checkpoint.pt").exists()
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    ranks = {_env_of(int(pid)).get("RANK"): int(pid) for pid in workers}  # torchrun sets RANK per worker
    assert set(ranks) == {"0", "1"}, ranks
    os.kill(ranks["1"], signal.SIGTERM)  # rank 1 only: rank 0, which saves, learns of it through the all-reduce
    _, err = proc.communicate(timeout=60)
    assert "interrupted at step" in err and "checkpoint saved" in err
    assert proc.returncode != 0  # torchrun reports the interrupted (exit 130) workers as failed
    step = json.loads((run / "run.json").read_text())["step"]
    assert f"interrupted at step {step}" in err


def test_device_selection_and_a_clear_cuda_error(monkeypatch):
    """cpu and auto resolve on a CPU machine; cuda without a GPU (or LOCAL_RANK past the GPUs) is an error
    that names the fix; an unknown device too."""
    import torch

    from kdp_edge.errors import ConfigError
    from kdp_edge.train import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device cpu"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(ConfigError, match="nproc_per_node"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
