"""Subprocess smoke tests of `kdp-edge data`, `train`, `eval` on tiny data, resume, and clear errors."""

import json
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import SIGINT_DEFAULT, kdp_cmd

TINY = {"model": {"mlp_hidden": 64, "mlp_layers": 2}, "data": {"horizon": 8},
        "optim": {"conditions": 8, "samples": 4, "positives": 8, "warmup": 5},
        "log_every": 10, "checkpoint_every": 10}


def run(args, env, **kw):
    return subprocess.run(kdp_cmd(*args), env=env, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, cli_env):
    out = tmp_path_factory.mktemp("data") / "umaze.hdf5"
    r = run(["data", "pointmaze", "--maze", "umaze", "--steps", "3000", "--seed", "1", "--out", str(out)], cli_env)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.json"
    p.write_text(json.dumps(TINY))
    return p


def test_data_writes_d4rl_layout(tiny_data):
    with h5py.File(tiny_data) as f:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts", "infos/goal", "infos/qpos", "infos/qvel"):
            assert key in f, key
        assert f["observations"].shape == (3000, 4) and f["actions"].shape == (3000, 2)
        assert f["timeouts"][999] and f["timeouts"][1999] and not f["timeouts"][1000]
        act = np.asarray(f["actions"])
        assert np.abs(act).max() <= 1.0
        goals = np.asarray(f["infos/goal"])
        assert len(np.unique(goals, axis=0)) > 1  # new goals drawn on arrival


def test_train_eval_and_resume(tmp_path, tiny_data, tiny_config, cli_env):
    run_dir = tmp_path / "run"
    r = run(["train", "--data", str(tiny_data), "--out", str(run_dir), "--config", str(tiny_config),
             "--steps", "20", "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "parameters" in r.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["step"] == 20 and info["obs_dim"] == 4 and info["act_dim"] == 2 and info["goal_dim"] == 2
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["data"]["horizon"] == 8 and cfg["drift"]["key"]["kind"] == "condition+descriptor"
    prov = json.loads((run_dir / "provenance.json").read_text())  # how the run was started
    assert prov["command"].startswith("kdp-edge train --data") and len(prov["commit"]) == 40
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [10, 20]
    assert {"diversity", "staticness", "lambda_0.05", "start_jump_ratio"} <= set(lines[0])

    # a second train into the same directory without --resume is refused
    r = run(["train", "--data", str(tiny_data), "--out", str(run_dir), "--steps", "5"], cli_env)
    assert r.returncode == 2 and "--resume" in r.stderr

    r = run(["train", "--resume", "--out", str(run_dir), "--steps", "30", "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and json.loads((run_dir / "run.json").read_text())["step"] == 30
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]

    report_path = tmp_path / "eval.json"
    plot = tmp_path / "rollouts.png"
    r = run(["eval", str(run_dir), "--env", "pointmaze-umaze", "--episodes", "2", "--candidates", "4",
             "--out", str(report_path), "--plot", str(plot), "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(report_path.read_text())
    assert rep["protocol"]["protocol"] == "own-actions" and "horizon 300" in rep["protocol_text"]
    for name in ("kdp", "expert", "random"):
        assert rep[name]["episodes"] == 2
    assert rep["expert"]["success_rate"] == 1.0  # the scripted expert reaches the goal
    assert rep["kdp"]["plan_latency"]["p99_ms"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| expert |" in r.stdout


def test_interrupted_training_resumes(tmp_path, tiny_data, tiny_config, cli_env):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(kdp_cmd("train", "--data", str(tiny_data), "--out", str(run_dir), "--config",
                                    str(tiny_config), "--steps", "100000", "--quiet"),
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **SIGINT_DEFAULT)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)  # generous: a loaded CI machine can stall a step for long
    assert proc.returncode == 130, err
    assert "Resume with" in err
    step = json.loads((run_dir / "run.json").read_text())["step"]
    assert step >= 10
    r = run(["train", "--resume", "--out", str(run_dir), "--steps", str(step + 10), "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    assert json.loads((run_dir / "run.json").read_text())["step"] == step + 10


def test_missing_file_names_the_generator(tmp_path, cli_env):
    r = run(["train", "--data", str(tmp_path / "nope.hdf5"), "--out", str(tmp_path / "r")], cli_env)
    assert r.returncode == 2
    assert "dataset not found" in r.stderr and "kdp-edge data pointmaze" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_key_is_rejected(tmp_path, tiny_data, cli_env):
    r = run(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--key", "banana"], cli_env)
    assert r.returncode == 2 and "unknown key 'banana'" in r.stderr


def test_wrong_dims_are_rejected(tmp_path, tiny_data, tiny_config, cli_env):
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f["observations"] = np.zeros((100, 4), np.float32)
        f["actions"] = np.zeros((90, 2), np.float32)
    r = run(["train", "--data", str(bad), "--out", str(tmp_path / "r")], cli_env)
    assert r.returncode == 2 and "'actions' has 90 rows but observations has 100" in r.stderr
    # resuming a run on a dataset with other dims is refused
    run_dir = tmp_path / "run"
    assert run(["train", "--data", str(tiny_data), "--out", str(run_dir), "--config", str(tiny_config),
                "--steps", "10", "--quiet"], cli_env).returncode == 0
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f["observations"] = np.zeros((100, 6), np.float32)
        f["actions"] = np.zeros((100, 2), np.float32)
        f["infos/goal"] = np.zeros((100, 2), np.float32)
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["data"]["path"] = str(other)
    (run_dir / "config.json").write_text(json.dumps(cfg))
    r = run(["train", "--resume", "--out", str(run_dir), "--steps", "20"], cli_env)
    assert r.returncode == 2 and "dims" in r.stderr


def test_import_does_not_pull_torch_or_mujoco(cli_env):
    code = "import sys, kdp_edge, kdp_edge.cli, kdp_edge.planning, kdp_edge.mazes; " \
           "bad = [m for m in ('torch', 'mujoco', 'gymnasium') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    r = subprocess.run([__import__("sys").executable, "-c", code], env=cli_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
