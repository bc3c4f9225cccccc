"""Jobs in parallel processes, each with a line of its own under a sweep's progress bar.

A process that dies (killed for memory, say) loses only its own job. Its stdout and stderr are sent
to the parent through a pipe (`ProcessOutput`): its progress bars' redraws go to its line, what it
prints goes above the bars.
"""
from __future__ import annotations

import os
import sys
import time
from multiprocessing import get_context
from multiprocessing.connection import wait

from tqdm.auto import tqdm

FORWARD_SECONDS = 1   # a process sends its progress bars' redraws at most this often


def run_parallel(tasks: list[tuple[str, tuple]], worker, jobs: int, bar, progress: bool, status, died) -> None:
    """`worker(*args, threads, conn)` for each (name, args) of `tasks`, each in a process of its own,
    `jobs` at a time, the CPU's threads shared among them. Under `bar`, a line per running task:
    `status(i)` as it starts, then the bars its process draws; what it prints is printed above the
    bars. `bar` advances as each ends; `died(i, how)` is told of a process that ended with an error."""
    ctx, threads = get_context("spawn"), max(1, (os.cpu_count() or 1) // jobs)
    lines = [tqdm(bar_format="{desc}", position=i + 1, disable=not progress, dynamic_ncols=True)
             for i in range(jobs)]
    waiting, running, readers, free = list(range(len(tasks))), {}, {}, list(range(jobs))
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i, slot = waiting.pop(0), free.pop(0)
                reader, writer = ctx.Pipe(duplex=False) if progress else (None, None)
                proc = ctx.Process(target=worker, args=(*tasks[i][1], threads, writer))
                proc.start()
                running[proc.sentinel] = (i, proc, slot, reader)
                if progress:
                    writer.close()
                    readers[reader] = proc.sentinel
                    lines[slot].set_description_str(f"{tasks[i][0]}: {status(i)}")
            for ready in wait([*running, *readers]):
                if ready in readers:
                    i, _, slot, _ = running[readers[ready]]
                    if not _show(ready, f"{tasks[i][0]}: ", lines[slot]):
                        del readers[ready]
                elif ready in running:  # not a reader closed earlier in this round
                    i, proc, slot, reader = running.pop(ready)
                    proc.join()
                    if reader is not None:
                        if reader in readers:  # what it sent before it ended, up to its end
                            _show(reader, f"{tasks[i][0]}: ", lines[slot])
                        readers.pop(reader, None)
                        reader.close()
                    if proc.exitcode:  # the worker records its own errors: this process died
                        died(i, f"killed by signal {-proc.exitcode}" if proc.exitcode < 0 else
                             f"exit code {proc.exitcode}")
                    lines[slot].set_description_str("")
                    free.append(slot)
                    bar.update(1)
    finally:
        for reader in readers:
            reader.close()
        for line in lines:
            line.close()


def _show(reader, prefix: str, line) -> bool:
    """Shows what a task's process has sent so far: bars on its `line`, text above the bars. False
    once the process has closed its end (an ended process's pipe is read to that end)."""
    while True:
        try:
            kind, text = reader.recv()
        except EOFError:
            return False
        if kind == "bar":
            line.set_description_str(prefix + text)
        else:
            tqdm.write(text, file=getattr(sys, kind))
        if not reader.poll():
            return True


class ProcessOutput:
    """Stands in for stdout or stderr (`kind`) in a task's process and sends what it writes to the
    parent: a progress bar's redraws (tqdm starts each with a carriage return) at most one every
    FORWARD_SECONDS, and the last one when the bar ends, for the task's line under the parent's bar;
    other text a whole line at a time, to be printed above the bars. tqdm's cursor moves are dropped."""

    encoding = "utf-8"   # tqdm draws with Unicode blocks only where the stream says it can

    def __init__(self, conn, kind: str):
        self.conn, self.kind = conn, kind
        self.sent, self.pending, self.text, self.after_bar = 0.0, None, "", False

    def write(self, s: str) -> int:
        if not s:
            return 0
        if s.startswith("\r"):
            now, self.pending = time.monotonic(), s.strip() or self.pending
            if now - self.sent >= FORWARD_SECONDS:
                self.sent = now
                self._send_bar()
            elif not s.strip():  # a bar cleared as it ends
                self._send_bar()
            self.after_bar = True
        elif self.after_bar and not s.replace("\x1b[A", "").strip("\n"):  # a bar moving or ending
            if s == "\n":  # (or a nested bar moving down one line: our bars are never nested)
                self._send_bar()
        else:
            self.after_bar = False
            *whole, self.text = (self.text + s).split("\n")
            for line in whole:
                self.conn.send((self.kind, line))
        return len(s)

    def _send_bar(self) -> None:
        if self.pending:
            self.conn.send(("bar", self.pending))
            self.pending = None

    def flush(self) -> None:
        """Sends a line begun but not ended (what `print(..., end="", flush=True)` leaves), unless a
        bar has drawn since (tqdm flushes after every redraw): then the line goes on when it ends."""
        if self.text and not self.after_bar:
            self.conn.send((self.kind, self.text))
            self.text = ""

    def isatty(self) -> bool:
        return False


def send_output(conn) -> None:
    """In a job's process: its stdout and stderr go to the parent through `conn`."""
    sys.stdout, sys.stderr = ProcessOutput(conn, "stdout"), ProcessOutput(conn, "stderr")
