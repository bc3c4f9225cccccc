"""sparsecircuits: weight-sparse transformers whose circuits a person can read."""
from . import viz
from .api import (ensure_corpus, evaluate, export_circuit, load, load_circuit, run_config, save, sparsify, steer_model,
                  train, validate_circuit)
from .circuits import Circuit, PruneConfig, node_name, prune, search, validate
from .data import AdditionData, CharTokenizer
from .demo import run_demo
from .errors import UserError
from .frontier import sweep_config
from .model import NODE_LOCATIONS, ModelConfig, SparseTransformer, abs_topk, hook_names
from .sparsity import TopKProjector, density_at, lr_at, sparsified_parameters
from .training import DataConfig, RunConfig, TrainConfig, Trainer, answer_report, sparsity_report

__all__ = ["viz",
           "ensure_corpus", "evaluate", "export_circuit", "load", "load_circuit", "run_config", "save", "sparsify",
           "steer_model", "sweep_config", "train", "validate_circuit",
           "Circuit", "PruneConfig", "node_name", "prune", "search", "validate",
           "AdditionData", "CharTokenizer", "run_demo", "UserError",
           "NODE_LOCATIONS", "ModelConfig", "SparseTransformer", "abs_topk", "hook_names",
           "TopKProjector", "density_at", "lr_at", "sparsified_parameters",
           "DataConfig", "RunConfig", "TrainConfig", "Trainer", "answer_report", "sparsity_report"]
