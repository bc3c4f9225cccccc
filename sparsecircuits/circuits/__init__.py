from .calibration import Calibration
from .circuit import AblatedModel, Circuit
from .edges import circuit_edges
from .means import MEAN_FILE, compute_means, load_or_compute_means, model_hash, prompt_means
from .nodes import node_name, node_site, node_sites, parse_node
from .pruner import PruneConfig, Pruner
from .run import circuit_means, prune, resolve_means, search
from .validation import nonsense_task, reinitialised, validate

__all__ = ["AblatedModel", "Calibration", "Circuit", "circuit_edges", "circuit_means", "MEAN_FILE",
           "compute_means", "load_or_compute_means", "model_hash", "node_name", "node_site", "node_sites", "parse_node",
           "prompt_means",
           "PruneConfig", "Pruner", "prune", "resolve_means", "search", "nonsense_task", "reinitialised", "validate"]
