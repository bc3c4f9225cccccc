"""The pruner's forward passes on a Python-corpus model, whose task prompts differ in length: as shipped
(prompts run in groups of similar length, each cut after its longest prompt, and only each prompt's
last position unembedded) against one padded pass over the whole batch, with the last positions only
and with every position unembedded and the last picked (the way it was done before).

Run: python benchmarks/prune_step.py [--corpus DIR] [--steps N] [--rounds R] [--threads T]
The model is python-cpu's dense cell (4 layers, width 128, vocabulary 2048), untrained: the time of a
pass does not depend on what the weights are (sparse weights are stored, and multiplied, densely). Two figures, each a ratio against the reference
measured in the same process, interleaved:
- a mask-training step (forward and backward over 64 task prompts), as `prune` runs 300 of them;
- the ablation effects of 64 nodes (16 copies of 64 held-out prompts per pass), as the cleanup measures them.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types

import torch

from sparsecircuits import Trainer
from sparsecircuits.tasks.evaluate import task_outputs
from sparsecircuits.circuits.effects import node_effects
from sparsecircuits.circuits.means import prompt_means
from sparsecircuits.circuits.pruner import NodeScores, PruneConfig, Pruner, Training
from sparsecircuits.frontier.config import sweep_preset
from sparsecircuits.tasks import get_task

from stdlib_slice import HELP, corpus_or_slice

TASK = "single_double_quote"


def padded_run(self, enc, gates, extra_hooks=(), replacement=None):
    """One padded pass over every prompt, unembedding the last positions only."""
    return task_outputs(self.forward(enc.tokens, gates, extra_hooks, replacement, enc.last), enc)


def every_position_run(self, enc, gates, extra_hooks=(), replacement=None):
    """`Pruner.run` as it was: one padded pass, logits at every position, then the last one picked."""
    logits = self.forward(enc.tokens, gates, extra_hooks, replacement)
    return task_outputs(logits[torch.arange(len(enc.last)), enc.last], enc)


def pruner(corpus: str, out: str, variant=None) -> Pruner:
    cfg = sweep_preset("python-cpu", corpus=corpus)
    run = cfg.run(next(c for c in cfg.cells() if c.kind == "dense"))
    run.train.device = "cpu"
    t = Trainer(run, out, progress=False)
    model, tok, task = t.model.eval(), t.data.tokenizer, get_task(TASK)
    means = prompt_means(model, [e.prompt for e in task.examples("train", 256, 0)], tok, "task")
    p = Pruner(model, task, tok, means, PruneConfig(means_from="task", n_train=512, n_test=64))
    if variant is not None:
        p.run = types.MethodType(variant, p)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", help=HELP)
    ap.add_argument("--steps", type=int, default=5, help="timed mask-training steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = corpus_or_slice(args.corpus, tmp)
        runs = {"as shipped": pruner(corpus, tmp), "one padded pass": pruner(corpus, tmp, padded_run),
                "padded, every position": pruner(corpus, tmp, every_position_run)}
        step = {k: [] for k in runs}
        effect = {k: [] for k in runs}
        for r in range(args.rounds + 1):  # round 0 warms up; interleaved so drift hits both alike
            for key, p in runs.items():
                g = torch.Generator().manual_seed(r)
                training = Training(p, NodeScores(p.model.cfg, 1.0, generator=g), g)
                t0 = time.perf_counter()
                training.steps(args.steps, 0.8, 0.05, progress=False, schedule=True)
                if r:
                    step[key].append((time.perf_counter() - t0) / args.steps)
                gates = p.all_open()
                nodes = [(site, c) for site in list(gates)[:2] for c in range(32)]
                t0 = time.perf_counter()
                node_effects(p, gates, nodes, p.calib)
                if r:
                    effect[key].append(time.perf_counter() - t0)
    p = runs["as shipped"]
    print(f"python-cpu shape (w128-dense), task {TASK}: {p.cfg.batch_pairs * 2} prompts of up to "
          f"{p.train.tokens.shape[1]} tokens per step, vocabulary {p.model.cfg.vocab_size}, "
          f"{torch.get_num_threads()} thread(s), medians over {args.rounds} rounds")
    for label, times in (("mask-training step", step), ("effects of 64 nodes", effect)):
        new = statistics.median(times["as shipped"])
        print(f"{label}: as shipped {new * 1e3:.0f} ms (reference)")
        for key in list(runs)[1:]:
            ref = statistics.median(times[key])
            print(f"  {key:<24}{ref * 1e3:9.0f} ms  {ref / new:.2f}x the time")


if __name__ == "__main__":
    main()
