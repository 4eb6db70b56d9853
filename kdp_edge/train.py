"""Training loop for KDP generators (``kdp-edge train`` / ``python -m kdp_edge.train``).

Each step: draw G conditions from the dataset windows, fetch each condition's P nearest dataset
windows (kNN in condition space, index built once), generate N windows per condition in one
batched pass, and regress on the keyed drift target (:mod:`kdp_edge.drift`). AdamW, EMA, gradient
clipping, JSONL metrics, atomic checkpoints and ``--resume``.

Distributed data parallel (``torchrun --nproc_per_node N -m kdp_edge.train ...``, or
``kdp-edge train --nproc N``; see docs/ddp.md). When ``WORLD_SIZE`` > 1 the trainer joins the process
group (gloo on CPU; nccl with ``--device cuda``, one GPU per process, ``cuda:LOCAL_RANK``;
``KDP_DDP_BACKEND`` overrides) and wraps the generator in
:class:`~torch.nn.parallel.DistributedDataParallel`:

* every rank loads the whole dataset, fits the same normaliser and builds the same kNN positive
  index; ``optim.conditions`` is *per rank* (global batch = world size x conditions);
* each rank draws its own conditions and noise: its numpy and torch RNGs are re-derived from
  (seed, rank, step) at start and on resume, so a checkpoint holds no per-rank state and resumes
  under any world size (a single process resuming restores the saved rank-0 RNG state);
* the drift field is computed per rank on its own batch. Negatives are NOT gathered across ranks:
  the negatives of a generated window are the other samples of its own condition group (d- is
  [G, N, N], mean-scaled per group), and a group lives entirely on one rank. Gathering would only
  add cross-condition windows that the per-group field never uses, at the cost of an all-gather of
  every generated batch. So the per-rank field equals the field of the same groups in one process;
* DDP averages the gradients; clipping, AdamW and the EMA then see identical gradients on every
  rank, so parameters and EMA stay identical (``KDP_DDP_DEBUG_DIR`` makes each rank write per-step
  parameter hashes there; tests/test_ddp.py compares them);
* checkpoints, metrics, logs and progress come from rank 0 only; the logged loss is the mean over ranks;
* SIGINT/SIGTERM only set a flag; all ranks agree on it each step (one tiny all-reduce, together
  with the loss), stop at the same step, rank 0 saves, everybody passes a barrier and exits 130.
  No rank ever leaves while another waits in a collective.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .checkpoint import LoadedRun, RunInfo, save_checkpoint, save_run_files
from .config import TrainConfig
from .errors import ConfigError, KDPError
from .fileio import append_jsonl
from .layout import WindowLayout
from .metrics import candidate_diversity, staticness
from .planning import ScoringSpec, window_problems
from .progress import Progress
from .windows import WindowSet


def _lr_at(step: int, cfg: TrainConfig) -> float:
    o = cfg.optim
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    frac = (step - o.warmup) / max(1, o.steps - o.warmup)
    return o.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _world() -> tuple[int, int]:
    """(rank, world size) from the torchrun environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(want: str):
    """``cpu``, ``cuda`` (``cuda:LOCAL_RANK`` under torchrun) or ``auto`` -> a torch.device, with a clear
    error when CUDA is asked for and this torch / machine has none."""
    import torch

    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cpu":
        return torch.device("cpu")
    if want == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for, but torch.cuda.is_available() is False (a CPU-only torch "
                              f"{torch.__version__}, or no visible GPU); use --device cpu or --device auto")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} visible GPU(s): start at "
                              "most that many processes per node (torchrun --nproc_per_node)")
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    raise ConfigError(f"unknown device '{want}': use cpu, cuda or auto")


def _ddp_wrap(model, device=None):
    """DDP around a thin module whose forward dispatches to a named method of ``model`` (DDP only
    hooks ``forward``; the trainer calls ``generate_normalized`` / ``loss``)."""
    import torch

    class _Dispatch(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, name: str, *args):
            return getattr(self.inner, name)(*args)

    ids = [device.index] if device is not None and device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(_Dispatch(model), device_ids=ids)


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: str | Path, prior: LoadedRun | None = None, log=print,
                 trajectories=None):
        """``prior``: the loaded run to resume (its weights, optimiser and RNG states are restored).
        ``trajectories`` (a :class:`~kdp_edge.windows.Trajectories`) replaces ``cfg.data.path``."""
        import torch

        from .data.readers import load_trajectories
        from .methods import method_for
        from .positives import positive_rule

        self.torch = torch
        self.cfg = cfg
        self.out = Path(out_dir)
        self.rank, self.world = _world()
        self.is_main = self.rank == 0
        self.log = log if self.is_main else (lambda *_: None)
        self.ddp = None
        self.device = resolve_device(cfg.device)
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                default = "nccl" if self.device.type == "cuda" else "gloo"
                dist.init_process_group(os.environ.get("KDP_DDP_BACKEND", default))
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if trajectories is not None:
            traj = trajectories
        elif not cfg.data.path:
            raise ConfigError("no dataset given: pass --data FILE (or data.path in the config)")
        else:
            traj = load_trajectories(cfg.data.path, goal=cfg.data.goal, obs_history=cfg.data.obs_history)
        if prior is not None:
            want = (prior.info.obs_dim, prior.info.act_dim, prior.info.goal_dim)
            have = (traj.obs_dim, traj.act_dim, traj.goal_dim)
            if want != have:
                raise KDPError(f"cannot resume: the run was trained on dims (obs, act, goal) = {want}, "
                               f"the dataset has {have}")
        layout = WindowLayout(traj.obs_dim, traj.act_dim, cfg.data.window)
        bad = [d for d in cfg.drift.key.descriptor_dims if not 0 <= d < layout.dim]
        if bad:
            raise ConfigError(
                f"drift.key.descriptor_dims {cfg.drift.key.descriptor_dims}: {bad} outside this dataset's windows of "
                f"{layout.describe(cfg.data.obs_history)}; valid dims are 0..{layout.dim - 1}: set "
                "drift.key.descriptor_dims in --config to dims that exist")
        # the planner this run's bundles get must be able to read its windows (action-only windows hold no
        # planned positions): refuse now, not after training
        scoring = ScoringSpec.for_env(traj.env, traj.goal_dim, traj.obs_dim, traj.act_dim, window=cfg.data.window)
        problems = window_problems(layout, scoring)
        if problems:
            raise ConfigError(f"data.window {cfg.data.window!r} on {traj.env or 'this dataset'} "
                              f"(goal_dim {traj.goal_dim}): " + "; ".join(problems))
        self.ws = WindowSet(traj, cfg.data.horizon, prior.normalizer if prior else None, window=cfg.data.window)
        self.positive_rule = positive_rule(cfg.optim.positive_source)
        self.method = method_for(cfg.method)  # the loss of one step and the model it trains (kdp_edge/methods)
        torch.manual_seed(cfg.seed)
        self.model = self.method.build_model(cfg, self.ws.norm, cfg.data.horizon).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.rng = np.random.default_rng(cfg.seed)
        self.step = 0
        from .models import count_parameters

        self.info = RunInfo(
            obs_dim=traj.obs_dim, act_dim=traj.act_dim, goal_dim=traj.goal_dim, horizon=cfg.data.horizon,
            env=traj.env, data=str(cfg.data.path or traj.source), parameters=count_parameters(self.model), method=cfg.method,
            torch_version=torch.__version__, obs_history=cfg.data.obs_history, window=cfg.data.window,
            step_dt_s=traj.step_dt_s, obs_names=list(traj.obs_names or []), act_names=list(traj.act_names or []))
        if prior is not None:
            self.model.load_state_dict(prior.state["model"])
            self.ema.load_state_dict(prior.state["ema"])
            self.opt.load_state_dict(prior.state["optimizer"])
            self.step = int(prior.state["step"])
            self.rng.bit_generator.state = prior.state["numpy_rng"]
            torch.set_rng_state(prior.state["torch_rng"])
            self.info.created = prior.info.created
            self.log(f"resuming {self.out} at step {self.step}/{cfg.optim.steps}")
        if self.world > 1:
            self.ddp = _ddp_wrap(self.model, self.device)
            self._reseed()
            self.log(f"distributed: {self.world} ranks ({torch.distributed.get_backend()}, {self.device.type}), "
                     f"{cfg.optim.conditions} conditions per rank")
        elif self.device.type != "cpu":
            self.log(f"device: {self.device} ({torch.cuda.get_device_name(self.device)})")
        self._debug_dir = os.environ.get("KDP_DDP_DEBUG_DIR") or None
        # a fixed probe set for sample metrics
        probe_rng = np.random.default_rng(12345)
        self.probe = self.ws.starts[probe_rng.choice(len(self.ws), size=min(64, len(self.ws)), replace=False)]
        self.probe_windows = self.ws.norm.denorm_window(self.ws.windows(self.probe))  # [64, H, D] raw

    def _reseed(self) -> None:
        """Per-rank numpy and torch RNGs derived from (seed, rank, step): distinct conditions and
        noise on every rank, and nothing per rank that a checkpoint would have to hold."""
        ss = np.random.SeedSequence([self.cfg.seed % 2**32, self.rank, self.step])
        self.rng = np.random.default_rng(ss)
        self.torch.manual_seed(int(ss.generate_state(1)[0]))

    def call(self, name: str, *args):
        """``self.model.<name>(*args)``, through DDP when distributed (so gradients are averaged)."""
        if self.ddp is not None:
            return self.ddp(name, *args)
        return getattr(self.model, name)(*args)

    # ---- one step -----------------------------------------------------------------------------
    def batch(self):
        torch, o = self.torch, self.cfg.optim
        starts = self.ws.starts[self.rng.integers(len(self.ws), size=o.conditions)]
        pos_starts = self.positive_rule(self.ws, starts, o.positives)  # [G, P]
        dev = self.device
        cond = torch.from_numpy(self.ws.conditions(starts)).to(dev)
        pos = torch.from_numpy(self.ws.windows(pos_starts)).to(dev)
        pos_cond = torch.from_numpy(self.ws.conditions(pos_starts)).to(dev)
        return cond, pos, pos_cond

    def train_step(self) -> dict[str, float]:
        torch, cfg = self.torch, self.cfg
        loss, stats = self.method.loss(self)
        for group in self.opt.param_groups:
            group["lr"] = _lr_at(self.step, cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.opt.step()
        with torch.no_grad():
            # EMA warm-up: early on the average would be dominated by the random initial weights
            d = min(cfg.optim.ema, (1 + self.step) / (10 + self.step))
            for pe, pm in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        self.step += 1
        stats.update(loss=float(loss.detach()), grad_norm=float(grad_norm), lr=self.opt.param_groups[0]["lr"])
        return stats

    # ---- metrics and checkpoints ----------------------------------------------------------------
    def sample_metrics(self, k: int = 16) -> dict[str, float | None]:
        """Diversity, static-ness and start consistency of the EMA model on the probe conditions, over
        the descriptor's window dims (positions; for action-only windows, actions). The start jump
        (planned step-1 state vs the observation) is None for action-only windows: they plan no state."""
        torch, ws = self.torch, self.ws
        obs = ws.traj.observations[self.probe]
        goal = ws.traj.goals[self.probe] if ws.traj.goals is not None else np.zeros((len(obs), 0), np.float32)
        with torch.no_grad():
            noise = torch.randn(len(obs) * k, self.cfg.data.horizon, self.model.window_dim,
                                generator=torch.Generator().manual_seed(0)).to(self.device)
            plans = self.ema(torch.from_numpy(np.repeat(obs, k, 0)).to(self.device),
                             torch.from_numpy(np.repeat(goal, k, 0)).to(self.device), noise)
        plans = plans.cpu().numpy().reshape(len(obs), k, *plans.shape[1:])
        data = self.probe_windows
        pos_dims = self.cfg.drift.key.descriptor_dims
        lo, hi = ws.layout.action_slice
        jump = None
        if ws.layout.has_states:
            o = ws.traj.obs_dim
            jump_plan = np.linalg.norm(plans[:, :, 1, :o] - obs[:, None], axis=-1).mean()
            jump_data = np.linalg.norm(data[:, 1, :o] - data[:, 0, :o], axis=-1).mean()
            jump = float(jump_plan / max(jump_data, 1e-9))
        return {
            "diversity": candidate_diversity(plans, pos_dims),
            "staticness": staticness(plans, data[:, None], pos_dims),
            "start_jump_ratio": jump,
            "action_rms": float(np.sqrt((plans[..., lo:hi] ** 2).mean())),
        }

    def save(self) -> None:
        torch = self.torch
        self.info.step = self.step
        save_run_files(self.out, self.cfg, self.ws.norm, self.info)
        save_checkpoint(self.out, {
            "model": self.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.opt.state_dict(),
            "step": self.step, "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        })

    def _agree(self, stats: dict[str, float], flag: bool) -> bool:
        """Distributed: one all-reduce of [loss, interrupted]; stats["loss"] becomes the mean over
        ranks. Returns whether any rank was interrupted (so all ranks stop at the same step)."""
        torch = self.torch
        t = torch.tensor([stats["loss"], float(flag)], dtype=torch.float64, device=self.device)  # nccl: on the GPU
        torch.distributed.all_reduce(t)
        stats["loss"] = float(t[0]) / self.world
        return bool(t[1] > 0)

    def _debug_write(self, stats: dict[str, float]) -> None:
        """KDP_DDP_DEBUG_DIR: per-step parameter / EMA hashes and the local loss of this rank."""
        def digest(module) -> str:
            h = hashlib.sha256()
            for p in module.parameters():
                h.update(p.detach().cpu().numpy().tobytes())
            return h.hexdigest()

        d = Path(self._debug_dir)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"rank{self.rank}.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "world": self.world, "params": digest(self.model),
                                "ema": digest(self.ema), "loss": stats["local_loss"]}) + "\n")

    def run(self, progress: bool = True) -> Path:
        try:
            return self._run(progress)
        finally:
            if self.world > 1 and self.torch.distributed.is_initialized():
                self.torch.distributed.destroy_process_group()

    def _run(self, progress: bool) -> Path:
        cfg = self.cfg
        progress = progress and self.is_main
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.log(f"model: {cfg.model.arch}, {self.info.parameters:,} parameters; {self.method.describe(cfg)}; "
                 f"windows: {len(self.ws):,} of horizon {cfg.data.horizon}; run dir: {self.out}")
        metrics_path = self.out / "metrics.jsonl"
        interrupted = {"flag": False}

        def _sigterm(*_):
            interrupted["flag"] = True

        old = signal.signal(signal.SIGTERM, _sigterm)
        # distributed: SIGINT must not raise KeyboardInterrupt mid-collective (the other ranks would wait
        # forever); it sets the flag that all ranks agree on after each step
        old_int = signal.signal(signal.SIGINT, _sigterm) if self.world > 1 else None
        t0, n0 = time.perf_counter(), self.step
        stop = False
        try:
            with Progress(cfg.optim.steps, "train", enabled=progress) as bar:
                bar.done = self.step
                while self.step < cfg.optim.steps and not stop:
                    stats = self.train_step()
                    stats["local_loss"] = stats["loss"]
                    stop = self._agree(stats, interrupted["flag"]) if self.world > 1 else interrupted["flag"]
                    if self._debug_dir:
                        self._debug_write(stats)
                    del stats["local_loss"]
                    bar.update(1, loss=stats["loss"])
                    if not self.is_main:
                        continue
                    if self.step % cfg.log_every == 0 or self.step == cfg.optim.steps:
                        stats.update(self.sample_metrics())
                        stats["step"] = self.step
                        stats["steps_per_s"] = (self.step - n0) / (time.perf_counter() - t0)
                        append_jsonl(metrics_path, stats)
                        bar.fields.update(div=stats["diversity"], static=stats["staticness"])
                    if self.step % cfg.checkpoint_every == 0:
                        self.save()
        except KeyboardInterrupt:
            interrupted["flag"] = stop = True
        finally:
            if self.world == 1:
                signal.signal(signal.SIGTERM, old)
        if self.is_main:
            self.save()
        if self.world > 1:
            self.torch.distributed.barrier()  # nobody exits (and trips torchrun) before rank 0 has saved
            signal.signal(signal.SIGTERM, old)
            signal.signal(signal.SIGINT, old_int)
        if stop if self.world > 1 else interrupted["flag"]:
            self.log(f"interrupted at step {self.step}; checkpoint saved. Resume with: "
                     f"kdp-edge train --resume --out {self.out}" + (f" --nproc {self.world}" if self.world > 1 else ""))
            raise SystemExit(130)
        self.log(f"done: {self.step} steps in {time.perf_counter() - t0:.1f}s; checkpoint {self.out / 'checkpoint.pt'}")
        return self.out


def main(argv=None) -> None:
    """``python -m kdp_edge.train`` is the same as ``kdp-edge train``."""
    os.execv(sys.executable, [sys.executable, "-m", "kdp_edge.cli", "train", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    main()
