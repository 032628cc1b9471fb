"""How much the configs repeat themselves: the share of value-setting lines that appear word for word in another
config.

    python benchmarks/config_repetition.py [--root configs] [--top 10]

The measure (issue #22, "Configs that say each thing once"):

* a *config* is a ``*.yaml`` file under ``configs/`` (any depth);
* a *value-setting line* is a line of a config that is neither blank nor a comment and whose stripped text (its
  trailing ``# comment`` removed, then surrounding white space) is either ``key: value`` with a non-empty value
  (``eps: 0.05``, ``init_args: {lr: 0.1}``) or a list item ``- value`` (``- class_path: dsflow.flows.OTDDTerm``,
  ``- + z0``); bare keys (``model:``, ``init_args:``) and bare dashes set nothing by themselves and are left out;
* a value-setting line is *repeated* when the same stripped text is a value-setting line of another config file.

Prints one table: files, value-setting lines, repeated lines and their share; ``--top N`` adds the N lines written
in the most files.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["Repetition", "value_lines", "measure", "main"]

_KEY = re.compile(r"^[^\s:#\-][^:#]*:(\s+(?P<value>.+))?$")  # key: value (the value may be empty)


@dataclass(frozen=True)
class Repetition:
    """The measure over a folder of configs.

    Attributes:
        files: the number of config files.
        lines: their value-setting lines (all files together).
        repeated: how many of those appear word for word (stripped) in another config file.
        counts: stripped line -> the number of files that write it.
    """

    files: int
    lines: int
    repeated: int
    counts: dict[str, int]

    @property
    def share(self) -> float:
        """Repeated lines as a share of value-setting lines (0 when there are none)."""
        return self.repeated / self.lines if self.lines else 0.0


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` at the start or after white space, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def value_lines(text: str) -> list[str]:
    """The value-setting lines of one YAML text, stripped (see the module docstring for the definition)."""
    out = []
    for raw in text.splitlines():
        line = _strip_comment(raw).strip()
        if not line:
            continue  # blank or comment
        if line.startswith("- ") or line == "-":
            if line[1:].strip():
                out.append(line)
            continue
        match = _KEY.match(line)
        if match and match.group("value"):
            out.append(line)
    return out


def measure(root: Path) -> Repetition:
    """The repetition measure over every ``*.yaml`` under ``root``."""
    files = sorted(root.rglob("*.yaml"))
    per_file = [value_lines(f.read_text()) for f in files]
    owners: dict[str, set[int]] = defaultdict(set)
    for i, lines in enumerate(per_file):
        for line in lines:
            owners[line].add(i)
    repeated = sum(len(owners[line]) > 1 for lines in per_file for line in lines)
    return Repetition(files=len(files), lines=sum(map(len, per_file)), repeated=repeated,
                      counts={line: len(ids) for line, ids in owners.items()})


def main(argv: list[str] | None = None) -> Repetition:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(ROOT / "configs"), help="folder of configs (default: the repository's configs/)")
    p.add_argument("--top", type=int, default=0, help="also list the N lines written in the most files")
    args = p.parse_args(argv)
    rep = measure(Path(args.root))
    print("| files | value-setting lines | repeated | % |")
    print("|---:|---:|---:|---:|")
    print(f"| {rep.files} | {rep.lines} | {rep.repeated} | {100 * rep.share:.0f} |")
    if args.top:
        print("\n| files | line |\n|---:|---|")
        for line, n in sorted(rep.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:args.top]:
            print(f"| {n} | `{line}` |")
    return rep


if __name__ == "__main__":
    main(sys.argv[1:])
