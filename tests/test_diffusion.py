"""The diffusion baseline (kdp_edge/diffusion.py): schedule, samplers against an exact denoiser,
first-state in-painting, training on the bimodal toy, and the CLI (train / eval / resume)."""

import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import kdp_cmd

from kdp_edge.config import TrainConfig
from kdp_edge.diffusion import DiffusionConfig, DiffusionGenerator, NoiseSchedule, sample_loop
from kdp_edge.models import KDPGenerator, ModelConfig
from kdp_edge.toy import bimodal_demos, mode_report
from kdp_edge.windows import Normalizer, Trajectories


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_sanity(kind):
    s = NoiseSchedule(kind, 256)
    ab = s.alphas_cumprod
    assert np.all(np.diff(ab) < 0) and ab[0] > 0.99 and 0 < ab[-1] < 0.01
    assert np.all((s.betas > 0) & (s.betas < 1))
    assert s.sampling_timesteps(256) == list(range(255, -1, -1))
    assert s.sampling_timesteps(1) == [255]
    five = s.sampling_timesteps(5)
    assert five[0] == 255 and len(five) == 5 and bool(np.all(np.diff(five) < 0))
    for t in (200, 50, 1):
        a, b, sigma = s.step_coefficients(t, t - 1, eta=0.0)
        assert sigma == 0.0 and a**2 + b**2 == pytest.approx(1.0)  # DDIM: variance preserving, no noise
        _, _, sigma = s.step_coefficients(t, t - 1, eta=1.0)  # DDPM: the posterior variance beta~_t
        assert sigma**2 == pytest.approx(s.betas[t] * (1 - ab[t - 1]) / (1 - ab[t]), rel=1e-9)
    with pytest.raises(ValueError, match="1..256"):
        s.sampling_timesteps(257)


def _gaussian_x0(mu, std, schedule):
    """The exact E[x0 | x_t] for data ~ N(mu, std^2) per dimension."""
    def x0_fn(x, t):
        ab = schedule.abar(t)
        return mu + std**2 * ab**0.5 * (x - ab**0.5 * mu) / (ab * std**2 + 1 - ab)
    return x0_fn


def test_samplers_recover_the_data_with_an_exact_denoiser():
    """With the exact denoiser, DDIM (T = 256, deterministic) and DDPM reproduce N(mu, std^2); one DDIM
    step returns the mean (no diversity); more steps are closer to the data than one."""
    s = NoiseSchedule("cosine", 256)
    mu, std = 0.7, 0.5
    x_T = torch.randn(4000, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fn = _gaussian_x0(mu, std, s)
    errs = {}
    for steps in (1, 5, 256):
        x = sample_loop(fn, x_T, s, steps, eta=0.0)
        errs[steps] = abs(float(x.std()) - std)
        assert float(x.mean()) == pytest.approx(mu, abs=0.03)
    assert errs[256] < 0.02 * std and errs[1] > 0.9 * std and errs[5] < errs[1]
    assert torch.equal(sample_loop(fn, x_T, s, 256), sample_loop(fn, x_T, s, 256))  # DDIM is deterministic
    x = sample_loop(fn, x_T, s, 256, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert float(x.mean()) == pytest.approx(mu, abs=0.03) and float(x.std()) == pytest.approx(std, rel=0.03)


def _tiny_model(prediction="sample", goal_dim=2):
    rng = np.random.default_rng(0)
    traj = Trajectories(rng.normal(size=(200, 4)).astype(np.float32) * 3 + 1,
                        rng.normal(size=(200, 2)).astype(np.float32), np.zeros(200, bool),
                        rng.normal(size=(200, goal_dim)).astype(np.float32) if goal_dim else None)
    norm = Normalizer.fit(traj)
    mcfg = ModelConfig(mlp_hidden=32, mlp_layers=2)
    torch.manual_seed(0)
    return DiffusionGenerator(norm, 8, mcfg, DiffusionConfig(prediction=prediction, sample_steps=4)), norm, mcfg


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
def test_first_state_inpainting_is_exact_and_interface_matches_kdp(prediction):
    model, norm, mcfg = _tiny_model(prediction)
    obs = torch.randn(5, 4) * 3 + 1
    goal = torch.randn(5, 2)
    noise = torch.randn(5, 8, 6)
    for sampler in ("ddim", "ddpm"):
        model.set_sampler(sampler, 4)
        with torch.no_grad():
            out = model(obs, goal, noise)
        assert out.shape == (5, 8, 6) and torch.isfinite(out).all()
        assert torch.equal(out[:, 0, :4], obs)
    cond = model.normalize_condition(obs, goal)
    with torch.no_grad():
        x0 = model.denoise(noise, torch.full((5,), 100), obs, goal)
    assert torch.equal(x0[:, 0, :4], model.first_state(cond))
    kdp = KDPGenerator(norm, 8, mcfg)
    kdp_buffers = {n for n, _ in kdp.named_buffers()}
    assert kdp_buffers <= {n for n, _ in model.named_buffers()}
    assert set(model.state_dict()) - {f"net.{k}" for k in model.net.state_dict()} == kdp_buffers  # schedule not saved
    for attr in ("obs_dim", "act_dim", "goal_dim", "window_dim", "horizon"):
        assert getattr(model, attr) == getattr(kdp, attr)
    with pytest.raises(ValueError, match="1..256"):
        model.set_sampler("ddim", 300)
    with pytest.raises(ValueError, match="unknown sampler"):
        model.set_sampler("euler")


def test_sampler_options_are_ignored_with_a_note_for_drift_runs():
    from kdp_edge.evaluate import configure_sampler

    notes = []
    assert configure_sampler(object(), "drift", "ddpm", 5, log=notes.append) == {"method": "drift"}
    assert len(notes) == 1 and "ignored" in notes[0]
    assert configure_sampler(object(), "drift", None, None, log=notes.append) == {"method": "drift"} and len(notes) == 1


def test_training_on_the_toy_reduces_loss_and_more_steps_get_closer_to_data(tmp_path):
    from kdp_edge.train import Trainer

    torch.set_num_threads(1)
    cfg = TrainConfig(method="diffusion")
    cfg.data.horizon = 16
    cfg.model.mlp_hidden, cfg.model.mlp_layers = 128, 2
    cfg.optim.steps, cfg.optim.warmup, cfg.optim.lr = 500, 20, 2e-3
    cfg.diffusion.batch_size = 256
    demos = bimodal_demos(n=256, seed=0)
    tr = Trainer(cfg, tmp_path, trajectories=demos, log=lambda *a: None)
    losses = [tr.train_step()["loss"] for _ in range(cfg.optim.steps)]
    assert np.mean(losses[-50:]) < 0.3 * np.mean(losses[:10])
    data = demos.observations.reshape(-1, 16, 2)
    noise = torch.randn(128, 16, 4, generator=torch.Generator().manual_seed(0))
    nn_dist, reports = {}, {}
    for steps in (1, 20):
        tr.ema.set_sampler("ddim", steps)
        with torch.no_grad():
            plans = tr.ema(torch.zeros(128, 2), torch.zeros(128, 0), noise).numpy()[..., :2]
        d = np.linalg.norm(plans[:, None] - data[None], axis=-1).mean(-1)  # [128, demos]
        nn_dist[steps], reports[steps] = float(d.min(1).mean()), mode_report(plans)
    assert nn_dist[20] < 0.7 * nn_dist[1], nn_dist
    assert reports[1]["through_obstacle"] > 0.5  # one step = the conditional mean: through the obstacle
    assert reports[20]["through_obstacle"] < 0.3 and min(reports[20]["above"], reports[20]["below"]) > 0.2, reports


TINY = {"model": {"mlp_hidden": 64, "mlp_layers": 2}, "data": {"horizon": 8},
        "optim": {"conditions": 8, "samples": 4, "warmup": 5}, "diffusion": {"timesteps": 64, "sample_steps": 4},
        "log_every": 10, "checkpoint_every": 10}


def _run(args, env):
    return subprocess.run(kdp_cmd(*args), env=env, capture_output=True, text=True, timeout=300)


def test_cli_train_eval_resume(tmp_path, cli_env):
    data, cfg_file, run_dir = tmp_path / "umaze.hdf5", tmp_path / "tiny.json", tmp_path / "run"
    cfg_file.write_text(json.dumps(TINY))
    r = _run(["data", "pointmaze", "--maze", "umaze", "--steps", "2000", "--seed", "1", "--out", str(data)], cli_env)
    assert r.returncode == 0, r.stderr
    r = _run(["train", "--method", "diffusion", "--data", str(data), "--out", str(run_dir), "--config", str(cfg_file),
              "--steps", "20", "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "diffusion: sample prediction, T = 64" in r.stderr
    assert json.loads((run_dir / "run.json").read_text())["method"] == "diffusion"
    assert json.loads((run_dir / "config.json").read_text())["diffusion"]["timesteps"] == 64
    r = _run(["train", "--resume", "--out", str(run_dir), "--steps", "30", "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and json.loads((run_dir / "run.json").read_text())["step"] == 30
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [10, 20, 30]
    assert {"loss", "diversity", "staticness", "start_jump_ratio"} <= set(lines[-1])

    report = tmp_path / "eval.json"
    r = _run(["eval", str(run_dir), "--episodes", "2", "--candidates", "4", "--sample-steps", "5", "--sampler", "ddpm",
              "--no-references", "--out", str(report), "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    assert (rep["checkpoint"]["method"], rep["checkpoint"]["sampler"], rep["checkpoint"]["sample_steps"]) == \
        ("diffusion", "ddpm", 5)
    assert rep["kdp"]["episodes"] == 2 and "ddpm T=5" in r.stdout
    assert "| diffusion |" in r.stdout and "| kdp |" not in r.stdout  # the row names the run's method
    r = _run(["eval", str(run_dir), "--episodes", "1", "--sample-steps", "65", "--no-references", "--quiet",
              "--out", str(report)], cli_env)
    assert r.returncode == 2 and "1..64" in r.stderr and "Traceback" not in r.stderr
