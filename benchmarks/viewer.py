"""How fast the circuit report is built and how fast it opens in headless Chromium.

Run `sparsecircuits demo` first, then: python benchmarks/viewer.py [--demo demo]
Building is given as a ratio to one default pruning run of the sparse model; opening as a ratio to
opening an empty page in the same browser, all measured in this process.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

import sparsecircuits as sc
from sparsecircuits.circuits import prune, resolve_means
from sparsecircuits.tasks import get_task

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def open_seconds(page, url: str, ready: str) -> float:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, state="attached")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", default="demo", help="output folder of `sparsecircuits demo`")
    args = ap.parse_args()
    demo = Path(args.demo)
    dirs = [demo / "base_circuit", demo / "sparse_circuit"]

    model = sc.load(demo / "sparse")
    means = resolve_means(model, "pretraining", get_task("add2_digit4"), model.tokenizer, progress=False)
    t0 = time.perf_counter()
    prune(model, "add2_digit4", 0.15, means=means, progress=False)
    prune_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    models = sc.viz.report_models(dirs, labels=["base", "sparse"], progress=False)
    build_s = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp()) / "report.html"
    sc.viz.write_report(models, out, "benchmark")
    empty = out.with_name("empty.html")
    empty.write_text("<!doctype html><body data-ready='1'></body>")
    nodes = sum(len(m["nodes"]) for m in models)
    edges = sum(len(m["edges"]) for m in models)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        base = sorted(open_seconds(page, empty.as_uri(), "body[data-ready='1']") for _ in range(5))[2]
        opens = sorted(open_seconds(page, out.as_uri(), "body[data-ready='1']") for _ in range(5))
        node = page.locator("#graph-svg circle.node").nth(10)
        t0 = time.perf_counter()
        node.click()
        page.wait_for_selector("#node-name")
        click_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.select_option("#prompt-picker", index=2)
        redraw_s = time.perf_counter() - t0
        browser.close()

    print(f"report of base + sparse circuits: {nodes:,} nodes and {edges:,} edges drawn, "
          f"{out.stat().st_size / 1e6:.1f} MB")
    print(f"build (data for both): {build_s:.1f} s = {build_s / prune_s:.2f}x one default pruning run ({prune_s:.1f} s)")
    print(f"open in Chromium (median of 5): {opens[2]:.2f} s = {opens[2] / base:.1f}x an empty page ({base * 1000:.0f} ms)")
    print(f"click a node -> panel: {click_s * 1000:.0f} ms; change prompt -> flow redrawn: {redraw_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
