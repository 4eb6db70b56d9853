"""PushT (gym-pusht ``PushT-v0``, state observations): env name ``pusht``.

Data steps are 0.1 s (10 Hz demonstrations); goal-free, so plans are chosen by consensus over the
executed action chunk; evaluation is Diffusion Policy's low-dim protocol (:mod:`kdp_edge.pusht`),
the export's closed-loop check runs it on every exported model (:mod:`export.closed_loop`); the
virtual robot behind ``sim://pusht`` is :class:`kdp_edge.pusht_sim.PushTEpisodes`.
"""

from __future__ import annotations

from . import Environment


class PushT(Environment):
    name = "pusht"
    step_dt_s = 0.1
    evaluate = "kdp_edge.pusht:evaluate_pusht"
    closed_loop = "export.closed_loop:pusht_scores"
    closed_loop_needs = ("gym_pusht",)
    closed_loop_extra = "pusht"
    sim_plant = "kdp_edge.pusht_sim:PushTEpisodes"
    sim_needs = ("gym_pusht",)
    sim_extra = "pusht"
