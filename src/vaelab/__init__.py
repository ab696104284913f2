"""vaelab: variational autoencoders with PyTorch Lightning and Hydra.

Importing the package loads nothing else (no Hydra, no torch): vaelab.configs registers the
config resolvers and schemas when a process that composes configs imports it.
"""

__version__ = "0.1.0"
