"""kdp-edge: Keyed Drifting Policies on the edge.

Importing this package is cheap: it pulls in neither torch nor a simulator. Training, export and
simulation code import their heavy dependencies inside the functions that need them.
"""

__version__ = "0.1.0"
