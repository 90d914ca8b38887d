"""The embedded development stack behind `make run` and `make test` (`python -m
devstack`, see devstack/__main__.py). Standard library only (apart from the app's
own CLI, run as subprocesses), so it works before and outside the app's imports.
Its modules: paths, assets (the pinned htmx), redis_server (a private Redis),
supervisor (restarting what dies), settings (the development settings and CLI) and
stack (`make run` itself)."""
