"""The pinned npm files the portal and its browser tests load, fetched from the
npm registry and checked against their published integrity hash: htmx (and
axe-core, for the browser tests)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path

from devstack.paths import ROOT

HTMX_VERSION = "2.0.11"
HTMX_INTEGRITY = "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA=="  # noqa: E501
HTMX_TARGET = ROOT / "static" / "vendor" / "htmx.min.js"
NPM_REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")


def fetch_htmx(target: Path = HTMX_TARGET) -> None:
    """Download the pinned htmx.org npm package and keep its dist/htmx.min.js."""
    fetch_npm_file("htmx.org", HTMX_VERSION, HTMX_INTEGRITY, "dist/htmx.min.js", target)


def fetch_npm_file(package: str, version: str, integrity: str, member: str, target: Path) -> None:
    """Download a pinned npm package and keep one file of it (`member`, a path
    inside the package) as `target`; nothing when that version is already there.

    The tarball must match the integrity hash of package-lock style pins, so a
    changed or tampered release is refused rather than served. The browser tests
    fetch axe-core through here too (tests/e2e/conftest.py)."""
    stamp = target.with_suffix(".version")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return
    url = f"{NPM_REGISTRY}/{package}/-/{package.rsplit('/', 1)[-1]}-{version}.tgz"
    print(f"devstack: fetching {package} {version} from {url}", flush=True)
    with urllib.request.urlopen(url, timeout=60) as response:
        tarball = response.read()
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        raise SystemExit(f"devstack: {package} tarball from {url} fails its integrity check")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        extracted = archive.extractfile(f"package/{member}")
        if extracted is None:
            raise SystemExit(f"devstack: {package} tarball has no {member}")
        content = extracted.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    stamp.write_text(version + "\n")
