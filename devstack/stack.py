"""`make run`: the whole product on embedded defaults, supervised until Ctrl-C —
a private Redis, the migrations and demo account, the portal (gunicorn), the
workers, the sweeper, the fake providers if asked, and the demo simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence

from devstack.paths import BIN, DEMO_LOGIN, DEMO_TOKEN, INSTANCE, MAKE_RUN_ENV, ROOT
from devstack.redis_server import RedisServer
from devstack.settings import demo_token, development_environment, stack_settings, write_private
from devstack.supervisor import SUPERVISE_EVERY_SECONDS, ChildProcess, Supervisor, say


def _flask(args: Sequence[str], env: Mapping[str, str], capture: bool = False) -> str:
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args],
        cwd=ROOT,
        env=dict(env),
        check=False,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    if result.returncode != 0:
        raise SystemExit(f"devstack: `flask {' '.join(args)}` failed ({result.returncode})")
    return result.stdout or ""


def wait_until_healthy(
    url: str, portal: ChildProcess, supervisor: Supervisor, timeout: float = 60.0
) -> bool:
    """Poll /healthz until it answers 200, the portal exits (it cannot start at
    all), or time runs out; the other children are restarted meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not portal.running:
            return False
        supervisor.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def start_fake_providers(
    env: Mapping[str, str],
) -> tuple[subprocess.Popen[bytes], dict[str, str], list[str]]:
    """The local fakes of the five providers (tests/fakes/serve.py): their process,
    the settings pointing Fleethook at them, and the credentials to type in."""
    process = subprocess.Popen(
        [str(BIN / "python"), "-m", "tests.fakes.serve"],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    settings: dict[str, str] = {}
    notes: list[str] = []
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode().strip()
        if line == "ready":
            return process, settings, notes
        if line.startswith("# "):
            notes.append(line[2:])
        elif "=" in line:
            name, value = line.split("=", 1)
            settings[name] = value
    raise SystemExit("devstack: the fake providers did not start")


def run(simulator: bool = True, fake_providers: bool = False) -> int:
    """`make run`: the whole product on embedded defaults, until Ctrl-C."""
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    env = development_environment(os.environ)
    port = int(env.get("PORT") or 5000)
    url = f"http://127.0.0.1:{port}/"
    # Where Salesforce's sign-in comes back to (never the request's Host header).
    env.setdefault("FLEETHOOK_PUBLIC_URL", url.rstrip("/"))

    supervisor = Supervisor()
    try:
        if not env.get("REDIS_URL"):
            # Memory only: restarted empty, it loses queued jobs, never messages
            # (the sweeper finds them in the database).
            redis = RedisServer(INSTANCE / "redis")
            redis_child = ChildProcess("redis", redis.command(), env, stops_last=True)
            redis.wait_until_answering(supervisor.start(redis_child).started_process)
            env["REDIS_URL"] = redis.url
        fake_lines: list[str] = []
        if fake_providers:
            fakes, fake_settings, fake_lines = start_fake_providers(env)
            # Not restarted: a new one would listen on other ports than the
            # settings the stack was given.
            supervisor.adopt(ChildProcess("fake providers", [], env, restart=False, process=fakes))
            env.update(fake_settings)
        write_private(MAKE_RUN_ENV, stack_settings(env))
        _flask(["db", "upgrade"], env)
        credentials = _flask(["demo", "seed"], env, capture=True)
        write_private(DEMO_LOGIN, credentials)
        write_private(DEMO_TOKEN, (demo_token(credentials) or "") + "\n")
        from core.config import DEFAULT_REDIS_NAMESPACE, retry_queues, verbose, worker_queues

        namespace = env.get("FLEETHOOK_REDIS_NAMESPACE") or DEFAULT_REDIS_NAMESPACE
        # A quiet console by default, so the banner stays in view: no line per
        # request or per job (the sweeper alone runs one every 5 s); the worker
        # logs a summary a minute (fleet/summary.py). FLEETHOOK_VERBOSE=1 logs
        # them all.
        loud = verbose(env)
        commands = {
            "portal": [
                str(BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                *(["--access-logfile", "-"] if loud else []),
                "--no-control-socket",
                "app:create_app()",
            ],
            "worker": [
                str(BIN / "rq"),
                "worker",
                "--worker-class",
                "worker.FleethookWorker",
                "--with-scheduler",
                *([] if loud else ["--quiet"]),
                "--url",
                env["REDIS_URL"],
                *worker_queues(namespace),
            ],
            # Targets that failed lately drain here, so their timeouts cannot
            # hold the worker healthy targets need.
            "retry worker": [
                str(BIN / "rq"),
                "worker",
                "--worker-class",
                "worker.FleethookWorker",
                *([] if loud else ["--quiet"]),
                "--url",
                env["REDIS_URL"],
                *retry_queues(namespace),
            ],
            "sweeper": [
                str(BIN / "rq"),
                "cron",
                "cron",
                "--logging-level",
                "info" if loud else "warning",
                "--url",
                env["REDIS_URL"],
            ],
        }
        started = {
            name: supervisor.start(ChildProcess(name, c, env)) for name, c in commands.items()
        }
        if not wait_until_healthy(url + "healthz", started["portal"], supervisor):
            say("the portal did not become healthy; stopping")
            return 1
        token = demo_token(credentials)
        if not simulator:
            simulator_line = "Simulator: off (--no-simulator or FLEETHOOK_SIMULATOR=0)"
        elif token is None:
            simulator_line = "Simulator: not started (`flask demo seed` printed no API token)"
        else:
            # The token goes in the environment, not on the command line `ps` shows.
            simulator_env = {**env, "FLEETHOOK_SIMULATOR_TOKEN": token}
            command = [str(BIN / "flask"), "--app", "app", "simulate", "--url", url.rstrip("/")]
            # Demo traffic only: not restarted, so `kill` stops it for good.
            simulator_child = ChildProcess("simulator", command, simulator_env, restart=False)
            pid = supervisor.start(simulator_child).pid
            simulator_line = (
                "Simulator: 5 demo vehicles post telemetry, events flow within a minute.\n"
                f"    `kill {pid}` stops it alone; "
                "`FLEETHOOK_SIMULATOR=0 make run` starts without it."
            )
        print(
            f"\n  Fleethook portal: {url}\n"
            + "".join(f"  {line}\n" for line in credentials.strip().splitlines())
            + f"  Redis: {env['REDIS_URL']}   Database: {env.get('DATABASE_URL') or 'instance/'}\n"
            f"  {simulator_line}\n"
            + "".join(f"  Fake {line}\n" for line in fake_lines)
            + "  `make token` shows the login and token again; `./fleethook --help`, the CLI.\n"
            "  A summary line a minute; FLEETHOOK_VERBOSE=1 logs every request and delivery.\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            supervisor.check()
            time.sleep(SUPERVISE_EVERY_SECONDS)
    except Stop as stop:
        print(f"\ndevstack: {stop}, stopping…", flush=True)
        return 0
    finally:
        # Ignore further Ctrl-C while cleaning up, so nothing is left half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
        # The CLI must not reach for a Redis that is gone.
        MAKE_RUN_ENV.unlink(missing_ok=True)
