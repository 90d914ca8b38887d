"""The embedded stack behind `make run` and `make test`: fetching the pinned htmx,
starting a private Redis server, and supervising the portal, the workers, the
sweeper and that Redis: one that dies is started again after a growing delay, and
Ctrl-C (or SIGTERM) stops everything that was started. gunicorn restarts its own
workers (and logs "Worker (pid:…) was sent SIGKILL!"); devstack restarts gunicorn.

    python -m devstack assets   fetch static/vendor/htmx.min.js (pinned, hash-checked)
    python -m devstack run      migrate, seed the demo account, run portal + workers
                                (--fake-providers, or FLEETHOOK_FAKE_PROVIDERS=1: the
                                integrations talk to local fakes of the providers)
                                and the demo vehicle simulator (--no-simulator, or
                                FLEETHOOK_SIMULATOR=0, leaves the simulator out)
    python -m devstack cli …    `flask --app app …` with the development settings and,
                                while `make run` runs, its Redis and database (what
                                the ./fleethook script runs)
    python -m devstack token    the demo login and API token `make run` last printed

Standard library only (apart from the app's own CLI, run as subprocesses), so it
works before and outside the app's imports.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from devstack.assets import fetch_htmx
from devstack.settings import cli, print_demo_login, simulator_wanted
from devstack.stack import run


def main(argv: Sequence[str] | None = None) -> int:
    args_given = list(sys.argv[1:] if argv is None else argv)
    if args_given[:1] == ["cli"]:
        # Everything after `cli` is the app's CLI's own, --help included.
        cli(args_given[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["assets", "run", "token"])
    parser.add_argument(
        "--fake-providers",
        action="store_true",
        help="run: point the integrations at local fakes of the providers' APIs (or "
        "FLEETHOOK_FAKE_PROVIDERS=1)",
    )
    parser.add_argument(
        "--no-simulator",
        action="store_true",
        help="run: do not start the demo vehicle simulator (or FLEETHOOK_SIMULATOR=0)",
    )
    args = parser.parse_args(args_given)
    if args.command == "token":
        return print_demo_login()
    if args.command == "assets":
        fetch_htmx()
        return 0
    fetch_htmx()
    wanted = os.environ.get("FLEETHOOK_FAKE_PROVIDERS", "").strip().lower()
    fakes = args.fake_providers or wanted in ("1", "true", "yes", "on")
    return run(simulator=simulator_wanted(os.environ, args.no_simulator), fake_providers=fakes)


if __name__ == "__main__":
    sys.exit(main())
