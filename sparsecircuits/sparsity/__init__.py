from .projection import TopKProjector, check_density, kept_count, sparsified_parameters
from .schedule import density_at, lr_at

__all__ = ["TopKProjector", "check_density", "kept_count", "sparsified_parameters", "density_at", "lr_at"]
