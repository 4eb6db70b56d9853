"""The app layer's robot-side commands: the ``kdp-edge run`` app (:mod:`.run`: the planner's control
loop over a serial link or a ``sim://`` virtual robot, logging, episodes), the bridge commands
(:mod:`.bridge_commands`: ``run``, ``virtual-controller``, ``serial-probe``, registered on the
``kdp-edge`` group) and the calibration commands (:mod:`.calibrate_commands`: ``calibrate io`` and
``calibrate latency`` around the procedures in ``calibration/robot_io.py``). The ``kdp-edge`` group
itself and its error policy are :mod:`kdp_edge.cli` and :mod:`kdp_edge.cli_policy`; the demo is
:mod:`kdp_edge.demo`. The transport (``firmware_bridge``) imports none of this.
"""
