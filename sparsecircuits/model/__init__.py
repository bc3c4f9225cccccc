from .config import ABSTOPK_LOCATIONS, LOCATIONS, NODE_LOCATIONS, ModelConfig
from .hooks import LAYER_HOOKS, hook_names
from .io import load_model, save_model
from .transformer import SparseTransformer, abs_topk

__all__ = ["ABSTOPK_LOCATIONS", "LOCATIONS", "ModelConfig", "LAYER_HOOKS", "NODE_LOCATIONS", "hook_names",
           "load_model", "save_model", "SparseTransformer", "abs_topk"]
