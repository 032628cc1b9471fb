"""benchmarks/gpu_check.py (dsflow.experiments.gpu_check): its CPU half end to end, as CI runs it, and a check
that hangs or fails costs that check, never the report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from dsflow.experiments.gpu_check import CHECKS, CPU, Check, Outcome, Skip, main, run_check


def _probe(name: str, code: str) -> Check:
    return Check(name, "a probe", lambda plan, work: [sys.executable, "-c", code],
                 lambda out: {"x": float(out.split()[-1])} if out.split() else {}, 1.0)


def test_a_hang_is_a_timeout_failure_and_a_crash_names_its_error(tmp_path: Path) -> None:
    hang = run_check(_probe("hang", "import time; print(1, flush=True); time.sleep(60)"), CPU, tmp_path, 2.0, tmp_path)
    assert (hang.status, hang.reason) == ("FAIL", "timeout after 2 s") and hang.seconds < 30
    crash = run_check(_probe("crash", "raise ValueError('bad shape')"), CPU, tmp_path, 30.0, tmp_path)
    assert crash.status == "FAIL" and "exit 1: ValueError: bad shape" in crash.reason
    ok = run_check(_probe("ok", "print(2.5)"), CPU, tmp_path, 30.0, tmp_path)
    assert ok == Outcome("pass", "", ok.seconds, {"x": 2.5})
    assert "ValueError: bad shape" in (tmp_path / "crash.log").read_text()  # the whole output kept


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU half runs where there is no CUDA")
def test_cpu_half_reports_every_check_without_failure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.md"
    assert main(["--out", str(out), "--budget", "900"]) == 0  # CPU half: about 2 min on 2 quiet cores
    report = out.read_text()
    assert "no CUDA on this machine" in report.splitlines()[2]
    rows = [li for li in report.splitlines() if li.startswith("| ") and "| cpu |" in li]
    assert [r.split("|")[1].strip() for r in rows] == [c.name for c in CHECKS]
    assert "FAIL" not in report
    skipped = {r.split("|")[1].strip() for r in rows if "| skipped (" in r}
    assert skipped == {c.name for c in CHECKS if isinstance(c.command(CPU, tmp_path), Skip)} == {"device tests", "cpu vs cuda"}
    resume = next(r for r in rows if r.startswith("| resume |"))
    assert "fd-fl 0" in resume and "jd-fl" in resume and "jd-vl" in resume  # exact resumes on the CPU
    step = report.split("## Step benchmark")[1]
    assert step.count("| 784d, fd-fl") == 2 and "host reads/step" in step
    printed = capsys.readouterr().out
    assert all(r in printed for r in rows)  # each line printed as it finished
