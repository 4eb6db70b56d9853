"""Datasets: the PointMaze generator, readers for local files (D4RL, Minari, OGBench, Diffusion Policy low-dim,
LeRobotDataset v2.x / v3.0), the LeRobot v3.0 writer, and trajectory windows."""
