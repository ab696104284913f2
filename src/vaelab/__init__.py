"""vaelab: variational autoencoders with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"

# Registered on any vaelab import, so Hydra finds them in every process, joblib workers included.
from vaelab.configs import register_resolvers  # noqa: E402
from vaelab.schemas import register_schemas  # noqa: E402

register_resolvers()
register_schemas()
