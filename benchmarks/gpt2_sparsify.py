"""A small GPT-2 (Hugging Face format) trained briefly on the Python corpus, then sparsified with
`sparsecircuits sparsify --data`: how far a short run gets, and the circuits of both on one task.

Needs `transformers` (pip install -e ".[hf]") and a corpus (sparsecircuits corpus build --out corpus):
    python benchmarks/gpt2_sparsify.py [--corpus corpus] [--steps 600] [--density 0.125]
Losses are reported with the dense original as the reference, all measured in this process.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

import sparsecircuits as sc
from sparsecircuits.cli import main as cli
from sparsecircuits.data.corpus import CorpusData
from sparsecircuits.tasks import get_task
from sparsecircuits.tasks.evaluate import evaluate_task
from sparsecircuits.training.evaluate import validation_loss


def train_dense_gpt2(corpus: str, out: Path, steps: int, batch: int = 32) -> float:
    cfg = transformers.GPT2Config(vocab_size=2048, n_positions=128, n_embd=128, n_layer=4, n_head=8,
                                  bos_token_id=2047, eos_token_id=2047)
    model = transformers.GPT2LMHeadModel(cfg).train()
    data = CorpusData(corpus, 128)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = data.train_batch(step, batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = 3e-3 * min(1.0, (step + 1) / 50) * (1 - step / steps)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.save_pretrained(out)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="corpus")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--density", type=float, default=0.125)
    ap.add_argument("--task", default="indent_for")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    dense_dir, sparse_dir = root / "gpt2", root / "gpt2-sparse"
    dense_s = train_dense_gpt2(args.corpus, dense_dir, args.steps)
    t0 = time.perf_counter()
    assert cli(["sparsify", str(dense_dir), "--density", str(args.density), "--data", args.corpus, "--steps",
                str(args.steps), "--batch-size", "32", "--out", str(sparse_dir), "--quiet"]) == 0
    sparse_s = time.perf_counter() - t0
    data = CorpusData(args.corpus, 128)
    dense = sc.load(dense_dir, tokenizer=args.corpus)
    sparse = sc.load(sparse_dir)
    vd, vs = validation_loss(dense, data, "cpu")["val_loss"], validation_loss(sparse, data, "cpu")["val_loss"]
    task = get_task(args.task)
    td, ts = evaluate_task(dense, task, dense.tokenizer)["loss"], evaluate_task(sparse, task, sparse.tokenizer)["loss"]
    print(f"dense GPT-2 (4 layers, d 128), {args.steps} steps x 32 x 128 tokens: {dense_s:.0f} s; "
          f"sparsify to density {args.density}, {args.steps} steps: {sparse_s:.0f} s = {sparse_s / dense_s:.2f}x")
    print(f"validation loss: dense {vd:.3f}, sparse {vs:.3f} nats/token ({vs / vd:.2f}x the dense)")
    print(f"{args.task} task loss: dense {td:.3f}, sparse {ts:.3f}")
    common = ["--target-loss", str(max(0.3, 1.5 * max(td, ts))), "--quiet"]
    cli(["prune", str(dense_dir), "--task", args.task, "--tokenizer", args.corpus, "--data", args.corpus,
         "--out", str(root / "c-dense"), *common])
    cli(["prune", str(sparse_dir), "--task", args.task, "--out", str(root / "c-sparse"), *common])
    cd, cs = sc.Circuit.load(root / "c-dense"), sc.Circuit.load(root / "c-sparse")
    print(f"circuits at loss {common[1]}: dense {cd.n_nodes} nodes / {cd.n_edges:,} edges, sparse {cs.n_nodes} nodes "
          f"/ {cs.n_edges:,} edges ({cd.n_edges / max(1, cs.n_edges):.1f}x fewer edges)")
    cli(["figure", str(root / "c-sparse"), str(root / "c-dense"), "--kind", "grid", "--labels", "sparse GPT-2,GPT-2",
         "--out", str(root / "grid.png"), "--quiet"])
    print(f"component grid: {root / 'grid.png'}")


if __name__ == "__main__":
    main()
