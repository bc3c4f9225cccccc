from .circuit import AblatedModel, Circuit
from .edges import circuit_edges
from .mean_cache import MEAN_FILE, compute_means, load_or_compute_means, model_hash
from .nodes import node_sites, parse_node
from .prune import PruneConfig, Pruner
from .run import model_means, prune, search
from .validate import nonsense_task, reinitialised, validate

__all__ = ["AblatedModel", "Circuit", "circuit_edges", "MEAN_FILE", "compute_means", "load_or_compute_means",
           "model_hash", "node_sites", "parse_node", "PruneConfig", "Pruner", "model_means", "prune", "search",
           "nonsense_task", "reinitialised", "validate"]
