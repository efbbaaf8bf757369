"""What scripts/fuzz_engines.py and scripts/fuzz_models.py share: the worker process, the loop and the report.

Each case runs in a worker process started with `spawn`, so that a crash (the process dies) or a hang (no result
within the case's time) is seen and the next case still runs in a fresh worker. The worker imports braze, limits
its address space to what it had then plus a memory limit (a case that asks for more fails inside braze rather
than taking the machine), says it is ready, and only then does a case's time start: on a loaded machine importing
braze alone can take longer than a case may. A fuzzer gives the worker its `run` function, a top-level function of
its module (pickled by name, so that the spawned worker imports it), and a way to judge one case; the loop totals
the outcomes per class and per mutation, and `main` gives the command line and the exit status (1 when any case
falls in a bad class).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from collections import Counter, defaultdict
from typing import Any, Callable, Sequence

CASE_SECONDS = 20.0
STARTUP_SECONDS = 300.0


def _worker(conn, run: Callable[[Any], Any], memory_limit: int) -> None:
    import resource

    import torch

    import braze  # noqa: F401 -- imported before the memory limit

    torch.set_num_threads(1)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_mapped_bytes() + memory_limit, hard))
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(run(job))


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class Worker:
    """Jobs run by `run` in a child process, so that a crash or a hang is seen and the next job still runs.

    `run` must be a top-level function (the spawned child unpickles it by its module and name); the child may map
    `memory_limit` bytes beyond what it had after importing braze."""

    def __init__(self, run: Callable[[Any], Any], memory_limit: int):
        self.target = run
        self.memory_limit = memory_limit
        self.proc = None
        self.conn = None

    def run(self, job: Any, timeout: float) -> Any:
        """What `run(job)` returns in the worker; ("hang", why) or ("crash", why) if so."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(job)
        if not self.conn.poll(timeout):
            self._kill()
            return "hang", f"no result after {timeout:.0f} s"
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.exitcode if self.proc else None
            self._kill()
            return "crash", f"worker died (exit code {code})"

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.target, self.memory_limit), daemon=True)
        self.proc.start()
        child.close()
        # NOTE: importing braze is not part of any case's time: on a loaded machine it alone can take many seconds
        try:
            ready = self.conn.poll(STARTUP_SECONDS) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._kill()
            raise RuntimeError(f"the fuzzing worker did not start within {STARTUP_SECONDS:.0f} s")

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)
        self._kill()


def fuzz_loop(cases: int, make_case: Callable[[int], Any], judge: Callable[[Worker, Any], tuple[str, str]],
              worker: Worker, bad_classes: Sequence[str], say: Callable[[str], None] = print) -> dict[str, Any]:
    """Make and judge `cases` cases (each with .index, .seed, .mutation: 'name' or 'name:detail'); returns the
    totals per class, per mutation name and the bad cases as (case, outcome, detail). Closes `worker`."""
    totals: Counter[str] = Counter()
    per_mutation: dict[str, Counter[str]] = defaultdict(Counter)
    bad: list[tuple[Any, str, str]] = []
    try:
        for index in range(cases):
            case = make_case(index)
            outcome, detail = judge(worker, case)
            totals[outcome] += 1
            per_mutation[case.mutation.split(":")[0]][outcome] += 1
            if outcome in bad_classes:
                bad.append((case, outcome, detail))
                last = (detail.strip().splitlines() or [""])[-1]
                say(f"case {index} ({case.seed}, {case.mutation}): {outcome}: {last}")
    finally:
        worker.close()
    return {"totals": totals, "per_mutation": per_mutation, "bad": bad}


def report(result: dict[str, Any], classes: Sequence[str], widths: tuple[int, int],
           say: Callable[[str], None] = print) -> None:
    """The totals per class, then a table of them per mutation (`widths`: its first column's and the others')."""
    first, other = widths
    say("totals: " + ", ".join(f"{c} {result['totals'][c]}" for c in classes))
    say(f"{'mutation':<{first}}" + "".join(f"{c:>{other}}" for c in classes))
    for mutation, counts in sorted(result["per_mutation"].items()):
        say(f"{mutation:<{first}}" + "".join(f"{counts[c]:>{other}}" for c in classes))


def main(argv: list[str] | None, description: str, fuzz: Callable[..., dict[str, Any]],
         report: Callable[[dict[str, Any]], None], bad_classes: Sequence[str]) -> int:
    """`--cases N --seed S --timeout T`: run `fuzz`, print its `report`; 1 when any case is bad, else 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=CASE_SECONDS, help="seconds per case before a hang")
    args = parser.parse_args(argv)
    result = fuzz(args.cases, args.seed, timeout=args.timeout)
    report(result)
    return 1 if any(result["totals"][c] for c in bad_classes) else 0
