"""Capability against interpretability (METHOD 7): sweeps over density and width, their circuits,
and the activation sparsity models find on their own."""
from .activations import activation_sparsity, input_sets, model_activations, save_activations, write_activation_figure
from .config import PRESETS, Cell, SweepConfig, sweep_config, sweep_preset
from .summary import summarize
from .sweep import RESULTS_FILE, run_sweep

__all__ = ["PRESETS", "RESULTS_FILE", "Cell", "SweepConfig", "activation_sparsity", "input_sets", "model_activations",
           "run_sweep",
           "save_activations", "summarize", "sweep_config", "sweep_preset", "write_activation_figure"]
