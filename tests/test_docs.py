"""README.md and docs/ hold true: links stay inside the repository, the REST
table lists every API route, and every shell block is fenced so the make-run test
can find it (tests/docs_commands.py; the commands themselves run there)."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.docs_commands import DOCUMENTS, NO_RUN, fenced_blocks, runnable_blocks

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_API_PATH = re.compile(r"/api/v1/[^\s`?,]*")
_PARAMETER = re.compile(r"<[^>]+>|\{[^}]+\}")


def test_links_point_inside_the_repository():
    for document in DOCUMENTS:
        for target in _LINK.findall(document.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT), f"{document.name}: {target} leaves the repository"
            assert path.exists(), f"{document.name}: {target} does not exist"


def _documented_routes() -> list[str]:
    """The README's REST table, a row per line, its paths with `{…}` for each
    parameter and each "· `action`" alternative spelled out as its own path."""
    section = ROOT.joinpath("README.md").read_text().split("## REST API", 1)[1]
    rows = []
    for line in section.split("\n## ", 1)[0].splitlines():
        if not line.startswith("| `"):
            continue
        paths = [_PARAMETER.sub("{}", path) for path in _API_PATH.findall(line)]
        for action in re.findall(r"· `([a-z-]+)`", line):
            paths += [path.rsplit("/", 1)[0] + "/" + action for path in paths[-1:]]
        rows.append(" ".join(paths) + " " + line.split("|")[1])
    return rows


def test_the_rest_table_lists_every_api_route(app):
    rows = _documented_routes()
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = _PARAMETER.sub("{}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if not any(f"{path} " in row and method in row for row in rows):
                missing.append(f"{method} {rule.rule}")
    assert missing == [], f"README's REST table lacks {missing}"


def test_shell_blocks_are_fenced_as_shell_and_some_run():
    for document in DOCUMENTS:
        for block in fenced_blocks(document):
            first = block.body.lstrip().split(" ", 1)[0]
            looks_like_shell = first in {"make", "curl", "./fleethook", "flask", "TOKEN=$(cat"}
            assert block.shell or not looks_like_shell, (
                f"{block.where}: fence it ```sh (or ```sh {NO_RUN}) so the make-run test sees it"
            )
    assert runnable_blocks(ROOT / "README.md") and runnable_blocks(ROOT / "docs" / "telemetry.md")
