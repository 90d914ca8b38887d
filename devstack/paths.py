"""Where the development stack keeps its files: this checkout, its instance/
folder (the keys, the running stack's settings, the demo login) and the
virtualenv's programs."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
BIN = Path(sys.executable).parent
# Kept once, read by every development command: SECRET_KEY and the encryption key.
DEVELOPMENT_ENV = INSTANCE / "development.env"
# While `make run` runs: the settings it gave its processes (its private Redis
# above all), so the CLI beside it reaches the same stack. Removed when it stops.
MAKE_RUN_ENV = INSTANCE / "make-run.env"
# What `flask demo seed` printed at the last start (login and API token), for
# `make token`, and the token alone, for shells: TOKEN=$(cat instance/demo-token).
DEMO_LOGIN = INSTANCE / "demo-login"
DEMO_TOKEN = INSTANCE / "demo-token"
