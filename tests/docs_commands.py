"""The shell commands of README.md and docs/*.md, as a reader copies them: every
fenced block whose info string starts with sh, bash, shell or console. A block
fenced ```` ```sh no-run ```` is shown but not run against the demo stack (it
starts one, runs the whole suite, or needs PostgreSQL or a provider's real
credentials). tests/test_make_run.py runs the others against `make run`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

SHELLS = {"sh", "bash", "shell", "console"}
NO_RUN = "no-run"

# The documents a reader follows; BENCHMARKS.md holds results, not commands.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```(?P<info>[^`\n]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    info: str
    body: str

    @property
    def shell(self) -> bool:
        return self.info.split()[:1] != [] and self.info.split()[0] in SHELLS

    @property
    def runs(self) -> bool:
        return self.shell and NO_RUN not in self.info.split()[1:]

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def fenced_blocks(document: Path) -> list[Block]:
    text = document.read_text()
    return [
        Block(
            document, text.count("\n", 0, match.start()) + 1, match["info"].strip(), match["body"]
        )
        for match in _FENCE.finditer(text)
    ]


def runnable_blocks(document: Path) -> list[Block]:
    return [block for block in fenced_blocks(document) if block.runs]


def script_of(document: Path, port: int) -> str:
    """One bash script of the document's runnable blocks, in order, as a reader
    pastes them into one terminal (a TOKEN set in one block serves the next).

    Two things differ from the page: the stack's port (the test's `make run`
    listens on a free one, not 5000), and curl fails on an HTTP error status —
    a 422 printed to the terminal is a command that failed as written."""
    lines = [
        "set -euo pipefail",
        'curl() { command curl --fail-with-body --silent --show-error "$@"; echo; }',
    ]
    for block in runnable_blocks(document):
        lines.append(f"echo '### {block.where}' >&2")
        lines.append(block.body.replace("127.0.0.1:5000", f"127.0.0.1:{port}"))
    return "\n".join(lines) + "\n"
