from .config import DataConfig, RunConfig, TrainConfig
from .evaluate import answer_report, sparsity_report
from .distributed import resolve_device
from .trainer import Trainer, make_data

__all__ = ["DataConfig", "RunConfig", "TrainConfig", "answer_report", "sparsity_report", "Trainer",
           "make_data", "resolve_device"]
