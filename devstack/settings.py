"""The development settings: the keys made once and kept in instance/, the running
stack's settings (so the CLI beside `make run` reaches the same Redis and
database), the development CLI (./fleethook), and the demo login `make run`
printed."""

from __future__ import annotations

import base64
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from devstack.paths import BIN, DEMO_LOGIN, DEVELOPMENT_ENV, MAKE_RUN_ENV, ROOT


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines (as the files in instance/ hold them); none if no file."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if value and not name.startswith("#"):
                values[name.strip()] = value.strip()
    return values


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read: these hold keys and tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def development_secrets(path: Path) -> dict[str, str]:
    """SECRET_KEY and an encryption key for the laptop, made once and kept in
    instance/ so sessions and encrypted secrets survive restarts."""
    values = read_env_file(path)
    if not {"SECRET_KEY", "FLEETHOOK_ENCRYPTION_KEYS"} <= values.keys():
        values.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
        # A Fernet key is 32 random bytes, url-safe base64.
        values.setdefault(
            "FLEETHOOK_ENCRYPTION_KEYS", base64.urlsafe_b64encode(os.urandom(32)).decode()
        )
        write_private(path, "".join(f"{name}={value}\n" for name, value in values.items()))
    return values


def development_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with the development settings under it: what `make run` and the
    development CLI run with. A variable already set wins."""
    env = dict(environ)
    env.setdefault("FLEETHOOK_ENV", "development")
    env.setdefault("FLEETHOOK_ALLOW_LOCAL_NETWORK", "1")
    for name, value in development_secrets(DEVELOPMENT_ENV).items():
        env.setdefault(name, value)
    return env


def stack_settings(env: Mapping[str, str]) -> str:
    """The MAKE_RUN_ENV text: every setting of the running stack that Fleethook
    reads, so a command beside it reaches the same Redis and database with the
    same keys."""
    names = sorted(
        name
        for name in env
        if name.startswith("FLEETHOOK_") or name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")
    )
    return "# make run's settings while it runs (removed when it stops)\n" + "".join(
        f"{name}={env[name]}\n" for name in names if "\n" not in env[name]
    )


def cli_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The development CLI's environment: `environ`, then the running stack's
    settings, then the development defaults (the first to set a variable wins)."""
    env = dict(environ)
    for name, value in read_env_file(MAKE_RUN_ENV).items():
        env.setdefault(name, value)
    return development_environment(env)


def cli(args: Sequence[str]) -> NoReturn:
    """`./fleethook …`: the app's CLI with the settings of the stack `make run`
    runs (or, when it is not running, the development settings alone)."""
    env = cli_environment(os.environ)
    flask = BIN / "flask"
    # The app is this checkout's, whatever the current directory.
    os.chdir(ROOT)
    os.execve(flask, [str(flask), "--app", "app", *args], env)


def print_demo_login() -> int:
    """`make token`: the demo login and API token the last `make run` printed."""
    if not DEMO_LOGIN.exists():
        message = "No demo login yet: `make run` creates the demo account and prints it."
        print(message, file=sys.stderr)
        return 1
    print(DEMO_LOGIN.read_text().strip())
    return 0


def simulator_wanted(env: Mapping[str, str], flag_off: bool = False) -> bool:
    """Whether `make run` starts the simulator: unless --no-simulator or
    FLEETHOOK_SIMULATOR=0 (or false/no/off)."""
    value = env.get("FLEETHOOK_SIMULATOR", "1").strip().lower()
    return not flag_off and value not in ("0", "false", "no", "off")


def demo_token(credentials: str) -> str | None:
    """The API token `flask demo seed` printed."""
    match = re.search(r"API token:\s+(\S+)", credentials)
    return match.group(1) if match else None
