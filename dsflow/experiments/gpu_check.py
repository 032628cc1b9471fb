"""One command that proves the GPU path: ``python benchmarks/gpu_check.py [--out FILE] [--budget S]``.

Runs the checks of :data:`CHECKS` in order, each in its own subprocess with its own timeout (a failure or a hang
costs that check, never the report), prints each check's line as it finishes and writes a Markdown report
(default ``runs/gpu_check/report.md``; each check's full output next to it, in ``logs/``). On a machine without
CUDA the report says so in its first lines and the CPU half runs (about 2 minutes on 2 CPU cores); CI runs it
(tests/test_gpu_check.py), so the script cannot rot. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["Plan", "CPU", "CUDA", "Skip", "Outcome", "Check", "CHECKS", "Target", "TARGETS", "run_check", "main"]


@dataclass(frozen=True)
class Plan:
    """What one half runs: the device and the sizes.

    Attributes:
        device: ``cuda`` or ``cpu``; accelerator: Lightning's name for it (``gpu``, ``cpu``).
        flow_steps: steps before a resume (then as many again), and of the DDP flow.
        table1_n, table1_steps: Table 1 flow size and steps.
        step_sizes, step_steps, step_warmup, step_check_up_to: the step benchmark's n, timed and untimed steps,
            the largest n whose gradient error it measures.
        budget_s: default overall time limit.
    """

    device: str
    accelerator: str
    flow_steps: int
    table1_n: int
    table1_steps: int
    step_sizes: tuple[int, ...]
    step_steps: int
    step_warmup: int
    step_check_up_to: int
    budget_s: float


CUDA = Plan("cuda", "gpu", 3, 5000, 30, (2000, 5000, 20000, 50000), 5, 2, 5000, 480.0)
CPU = Plan("cpu", "cpu", 2, 100, 3, (500, 2000), 1, 0, 500, 240.0)  # CPU: the timed step is the cold one


@dataclass(frozen=True)
class Skip:
    """A check that does not run on this half, and why."""

    reason: str


@dataclass
class Outcome:
    """What one check gave: ``pass``, ``FAIL`` or ``skipped``, why (for FAIL and skipped), seconds, its numbers
    (name -> value, from the check's parser) and any table it printed."""

    status: str
    reason: str = ""
    seconds: float = 0.0
    numbers: dict[str, float] = field(default_factory=dict)
    table: str = ""


@dataclass(frozen=True)
class Check:
    """One check: ``command(plan, work)`` is its subprocess's argv (or a :class:`Skip`), ``parse(stdout)`` its
    numbers, ``share`` its part of the budget: its timeout is the budget left times its share of the shares of
    the checks still to run on this half (skipped ones take none)."""

    name: str
    proves: str
    command: Callable[[Plan, Path], list[str] | Skip]
    parse: Callable[[str], dict[str, float]]
    share: float


def _runs(run: str, size: Callable[[Plan], int] = lambda p: 200, steps: Callable[[Plan], int] = lambda p: p.flow_steps):
    """The command of a :mod:`dsflow.experiments.gpu_check_runs` run."""
    def command(plan: Plan, work: Path) -> list[str]:
        return [sys.executable, "-m", "dsflow.experiments.gpu_check_runs", run, "--accelerator", plan.accelerator,
                "--work", str(work / run), "--size", str(size(plan)), "--steps", str(steps(plan))]
    return command


def _numbers_line(out: str) -> dict[str, float]:
    lines = [li for li in out.splitlines() if li.startswith("NUMBERS ")]
    return json.loads(lines[-1][len("NUMBERS "):]) if lines else {}


def _pytest_counts(out: str) -> dict[str, float]:
    return {k: float(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", out)}


def _step_rows(out: str) -> dict[str, float]:
    """s/step and host reads per step of each n from step_speed.py's Markdown rows."""
    numbers: dict[str, float] = {}
    for row in out.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[1].isdigit():
            numbers[f"s/step n={cells[1]}"] = float(cells[3])
            numbers[f"host reads n={cells[1]}"] = float(cells[8])
    return numbers


def _pytest(plan: Plan, work: Path) -> list[str] | Skip:
    if plan.device != "cuda":
        return Skip("no CUDA (the CPU tests are CI's job)")
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", "tests/"]


def _step_speed(plan: Plan, work: Path) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "step_speed.py"), "--workloads", "784d", "--sizes",
            *map(str, plan.step_sizes), "--steps", str(plan.step_steps), "--warmup", str(plan.step_warmup),
            "--check-up-to", str(plan.step_check_up_to)]


def _devices(plan: Plan, work: Path) -> list[str] | Skip:
    if plan.device != "cuda":
        return Skip("no CUDA: nothing to compare the CPU with")
    return _runs("devices", size=lambda p: 2000, steps=lambda p: 3)(plan, work)


CHECKS: list[Check] = [
    Check("device tests", "every test taking the `device` fixture passes on cuda", _pytest, _pytest_counts, 0.25),
    Check("resume", "fd-fl, jd-fl, jd-vl flows resumed from last.ckpt equal uninterrupted ones (1e-5)",
          _runs("resume"), _numbers_line, 0.15),
    Check("ddp", "a one-rank DDP flow (NCCL on GPUs, gloo on CPUs), two reference shards, equals one process",
          _runs("ddp"), _numbers_line, 0.1),
    Check("table1", "an oracle-scored Table 1 flow raises the oracle's accuracy",
          _runs("table1", size=lambda p: p.table1_n, steps=lambda p: p.table1_steps), _numbers_line, 0.25),
    Check("step benchmark", "784-d flow steps: time, memory, host reads, gradient error", _step_speed, _step_rows, 0.25),
    Check("cpu vs cuda", "the same 784-d flow (n = 2,000, 3 steps) has the same objective on both (1e-4)",
          _devices, _numbers_line, 0.1),
]


@dataclass(frozen=True)
class Target:
    """A goal of issue 23 on CUDA: ``check``'s number ``key`` at most ``limit``."""

    what: str
    check: str
    key: str
    limit: float


TARGETS = [
    Target("784-d step at n = 5,000 <= 20 ms (s)", "step benchmark", "s/step n=5000", 0.020),
    Target("784-d step at n = 50,000 <= 2 s (s)", "step benchmark", "s/step n=50000", 2.0),
    Target("host reads per step <= 10 (largest n)", "step benchmark", "host reads max", 10),
    Target("GPU objective = CPU objective, 1e-4 relative", "cpu vs cuda", "rel_diff", 1e-4),
    Target("30-step Table 1 row at n = 5,000 <= 10 s (s)", "table1", "seconds", 10.0),
]


def run_check(check: Check, plan: Plan, work: Path, timeout: float, logs: Path) -> Outcome:
    """Run one check in its own process group; a timeout kills the whole group and is a FAIL."""
    command = check.command(plan, work)
    if isinstance(command, Skip):
        return Outcome("skipped", command.reason)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.setdefault("WANDB_MODE", "offline")
    env.pop("DSFLOW_RUN_DIR", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1.0))
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    seconds = time.perf_counter() - t0
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{check.name.replace(' ', '_')}.log").write_text(" ".join(command) + "\n\n" + out)
    try:
        numbers, unparsed = check.parse(out), ""
    except (ValueError, KeyError, IndexError) as error:  # numbers lost, the report kept
        numbers, unparsed = {}, f"its numbers could not be read: {error}"
    if timed_out:
        return Outcome("FAIL", f"timeout after {timeout:.0f} s", seconds, numbers)
    if proc.returncode != 0:
        last = [li for li in out.splitlines() if li.strip()][-1:] or ["(no output)"]
        return Outcome("FAIL", f"exit {proc.returncode}: {last[0][:200]}", seconds, numbers)
    if unparsed:
        return Outcome("FAIL", unparsed, seconds)
    table = "\n".join(li for li in out.splitlines() if li.startswith("|")) if check.name == "step benchmark" else ""
    return Outcome("pass", "", seconds, numbers, table)


def _header(plan: Plan) -> list[str]:
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    if plan.device == "cuda":
        device = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        device = f"no CUDA on this machine: CPU half only ({os.cpu_count()} CPUs); the GPU goals are untested"
    return ["# GPU check", "", f"- device: {device}", f"- torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}", f"- commit: {commit}", ""]


def _fmt(numbers: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in numbers.items()) or "-"


def _line(check: Check, plan: Plan, o: Outcome) -> str:
    result = o.status + (f" ({o.reason})" if o.reason else "")
    return f"| {check.name} | {plan.device} | {result} | {o.seconds:.0f} | {_fmt(o.numbers)} |"


def _targets(plan: Plan, outcomes: dict[str, Outcome]) -> list[str]:
    if plan.device != "cuda":
        return ["Targets (issue 23): not measured, no CUDA."]
    lines = ["| target | measured | verdict |", "|---|---:|---|"]
    for t in TARGETS:
        value = outcomes[t.check].numbers.get(t.key) if t.check in outcomes else None
        verdict = "not measured" if value is None else ("pass" if value <= t.limit else "FAIL")
        lines.append(f"| {t.what} | {'-' if value is None else f'{value:.3g}'} | {verdict} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check/report.md"), help="report (default: %(default)s)")
    p.add_argument("--budget", type=float, default=None, help="overall seconds (default: 480 on CUDA, 240 on CPU)")
    p.add_argument("--checks", nargs="+", default=[c.name for c in CHECKS], choices=[c.name for c in CHECKS],
                   metavar="NAME", help="checks to run (default: all)")
    args = p.parse_args(argv)
    plan = CUDA if torch.cuda.is_available() else CPU
    budget = args.budget if args.budget is not None else plan.budget_s
    work, start = args.out.parent / "work", time.perf_counter()
    head = _header(plan)
    print("\n".join(head[2:4]), flush=True)
    outcomes: dict[str, Outcome] = {}
    rows = ["| check | device | result | seconds | numbers |", "|---|---|---|---:|---|"]
    chosen = [c for c in CHECKS if c.name in args.checks]
    runnable = [c for c in chosen if not isinstance(c.command(plan, work), Skip)]
    for check in chosen:
        left = budget - (time.perf_counter() - start)
        shares = sum(c.share for c in runnable[runnable.index(check):]) if check in runnable else 1.0
        o = run_check(check, plan, work, left * check.share / shares, args.out.parent / "logs") if left > 1 \
            else Outcome("FAIL", "overall budget spent")
        if check.name == "step benchmark" and o.numbers:
            o.numbers["host reads max"] = max(v for k, v in o.numbers.items() if k.startswith("host reads"))
        outcomes[check.name] = o
        rows.append(_line(check, plan, o))
        print(rows[-1], flush=True)
    step = outcomes.get("step benchmark")
    body = [*head, "What each check proves: " + "; ".join(f"**{c.name}**: {c.proves}" for c in CHECKS) + ".", "",
            *rows, "", "## Step benchmark (benchmarks/step_speed.py, 784d)", "",
            (step.table if step and step.table else "not run"), "", "## Targets", "", *_targets(plan, outcomes), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(body))
    print(f"report: {args.out}", flush=True)
    return 1 if any(o.status == "FAIL" for o in outcomes.values()) else 0
