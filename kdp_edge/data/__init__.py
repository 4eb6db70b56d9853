"""Datasets: the PointMaze generator, readers for local files, and trajectory windows."""
