"""The bimodal toy (:mod:`kdp_edge.toy`): env name ``toy-bimodal``. Goal-free, one 2-D position per
step; no simulator (its benchmark, ``bench/toy_modes.py``, reads mode shares off the plans)."""

from __future__ import annotations

from . import Environment


class BimodalToy(Environment):
    name = "toy-bimodal"
