from vaelab.metrics.image_quality import (
    SampleFidelity,
    load_inception,
    reconstruction_metrics,
    to_rgb_uint8,
)

__all__ = ["SampleFidelity", "load_inception", "reconstruction_metrics", "to_rgb_uint8"]
