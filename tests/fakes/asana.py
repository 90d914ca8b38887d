"""A fake Asana (api/1.0) on loopback, written from Asana's published API: the
OpenAPI file (github.com/Asana/openapi, defs/asana_oas.yaml) and the pages
"Errors", "Rate limits", "Pagination" and "Custom fields" of developers.asana.com.

- Bearer personal access tokens; `{"data": ...}` bodies; refusals as `{"errors":
  [{"message"}]}` (500s add the `phrase` Asana support looks them up by).
- Projects with custom field settings; tasks with custom field values, created and
  modified times; offset pagination (`limit` 1–100, `next_page.offset` an opaque
  token; a large list without `limit` refused as Asana does).
- `GET /projects/{gid}/tasks` and `GET /tasks?project=&modified_since=` answer the
  task records with the `opt_fields` asked for; `GET /tasks` without a project (or
  tag, section, assignee + workspace) is refused ("workspace: Missing input", the
  documented example).
- `PUT /tasks/{gid}` custom field updates checked against each field's type (a
  number for a number field, a string for a text field, null clears);
  `POST /tasks` creating a task in the given projects.
- "Rate limits": 150 requests a minute on a free domain — the fake counts them in a
  sliding minute (tests/fakes/base.py) and answers the documented 429 with
  `Retry-After` and the documented body.
- "Custom fields are an Asana Premium feature" and 402 is "above your current
  premium level": with `paid = False` the fake answers 402 to reading a project's
  custom field settings and to writing custom field values.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from core.times import format_rfc3339, parse_rfc3339
from tests.fakes.base import Answer, FakeProvider, Request

TOKEN = "2/1207700000000001/1208000000000001:5f0e7c1d2b3a49e8a1f6c7d8e9f0a1b2"
MAX_LIMIT = 100
# developers.asana.com "Rate limits": "Free: 150" requests a minute ("Paid: 1,500").
FREE_REQUESTS_PER_MINUTE = 150
# The 429 body as the "Rate limits" page shows it.
RATE_LIMITED = (
    "You've made too many requests and hit a rate limit. Please retry after the given "
    "amount of time."
)
# Guess: the words of a 402. Asana's forum (2018, "Premium-only API error changes")
# tells apps to look for "not available for free" in such refusals; the exact
# sentence is not published.
PREMIUM_ONLY = "Custom fields are not available for free workspaces."
# The words of each status when a test makes the fake fail (`fail_next`): the
# documented ones where "Errors" gives them, else the status's name.
WORDS = {
    400: "workspace: Missing input",
    401: "Not Authorized",
    402: PREMIUM_ONLY,
    429: RATE_LIMITED,
}
# Always in a task record that opt_fields do not replace.
TASK_COMPACT = ("gid", "resource_type", "name", "resource_subtype")


def _errors(message: str, phrase: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if phrase is not None:
        error["phrase"] = phrase
    return {"errors": [error]}


def _now() -> datetime:
    return datetime.now(UTC)


class FakeAsana(FakeProvider):
    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.paid = True  # False: the workspace is on the free plan (402 to custom fields)
        self.projects: dict[str, dict[str, Any]] = {}  # gid → {gid, name, fields: [gid]}
        self.custom_fields: dict[str, dict[str, Any]] = {}  # gid → {gid, name, resource_subtype}
        # gid → {gid, name, notes, projects, values, created_at, modified_at}
        self.tasks: dict[str, dict[str, Any]] = {}
        self._gids = itertools.count(1208000000000101)
        self._offsets: dict[str, int] = {}
        self.issued_offsets: list[str] = []  # every next_page.offset handed out, in order
        self.failing_task_creations = 0  # POST /tasks answers 500 this many times
        # POST /tasks answers 400 this many times (a refusal of that one task).
        self.refused_task_creations = 0
        # POST /tasks creates the task, then answers only after `answer_delay`
        # seconds this many times: longer than the client waits, its answer is lost.
        self.lost_creation_answers = 0
        self.answer_delay = 1.5
        self.throttle(FREE_REQUESTS_PER_MINUTE, 60)
        self.route("GET", r"/users/me", self.me)
        self.route("GET", r"/projects/(\d+)", self.project)
        self.route("GET", r"/projects/(\d+)/custom_field_settings", self.custom_field_settings)
        self.route("GET", r"/projects/(\d+)/tasks", self.project_tasks)
        self.route("GET", r"/tasks", self.find_tasks)
        self.route("PUT", r"/tasks/(\d+)", self.update_task)
        self.route("POST", r"/tasks", self.create_task)

    # -- set-up ----------------------------------------------------------------

    def _gid(self) -> str:
        return str(next(self._gids))

    def add_project(self, name: str = "Fleet", fields: dict[str, str] | None = None) -> str:
        """A project with custom fields by name → type (text, number, enum …)."""
        gid = self._gid()
        fields = fields if fields is not None else {"VIN": "text", "Odometer (mi)": "number"}
        field_gids = []
        for field_name, subtype in fields.items():
            field_gid = self._gid()
            self.custom_fields[field_gid] = {
                "gid": field_gid,
                "name": field_name,
                "resource_subtype": subtype,
            }
            field_gids.append(field_gid)
        self.projects[gid] = {"gid": gid, "name": name, "fields": field_gids}
        return gid

    def field_gid(self, project: str, name: str) -> str:
        for gid in self.projects[project]["fields"]:
            if self.custom_fields[gid]["name"] == name:
                return gid
        raise KeyError(name)

    def remove_field(self, project: str, name: str) -> None:
        """Take a custom field off the project (as a user in Asana can)."""
        gid = self.field_gid(project, name)
        self.projects[project]["fields"].remove(gid)

    def add_task(self, project: str, name: str, vin: str | None = None) -> str:
        """A task of the project; with `vin`, its VIN field holds it."""
        gid = self._gid()
        values = {self.field_gid(project, "VIN"): vin} if vin is not None else {}
        now = _now()
        self.tasks[gid] = {
            "gid": gid,
            "name": name,
            "notes": "",
            "projects": [project],
            "values": values,
            "created_at": now,
            "modified_at": now,
        }
        return gid

    def value(self, task: str, field_gid: str) -> Any:
        return self.tasks[task]["values"].get(field_gid)

    def tasks_named(self, prefix: str) -> list[dict[str, Any]]:
        return [task for task in self.tasks.values() if task["name"].startswith(prefix)]

    def fail_next(
        self,
        status: int,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """As FakeProvider.fail_next, with Asana's error body by default (and the
        phrase a 5xx carries)."""
        if body is None:
            if status >= 500:
                body = _errors("Server Error", "6 sad squid snuggle softly")
            else:
                body = _errors(WORDS.get(status, f"HTTP {status}"))
        super().fail_next(status, times, body, headers, path)

    # -- the API ---------------------------------------------------------------

    def throttled(self, retry_after: float, request: Request) -> Answer:
        """The documented 429: `Retry-After` in whole seconds and the documented body."""
        return Answer(
            429, _errors(RATE_LIMITED), {"Retry-After": str(max(1, math.ceil(retry_after)))}
        )

    def authenticate(self, request: Request) -> Answer | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, _errors("Not Authorized"))
        return None

    def _page(self, request: Request, items: list[Any]) -> Answer:
        """Asana's offset pagination over `items`."""
        query = {k: v[0] for k, v in request.query.items()}
        start = 0
        if "offset" in query:
            if query["offset"] not in self._offsets:
                return Answer(400, _errors("offset: Your pagination token is invalid."))
            start = self._offsets[query["offset"]]
        if "limit" not in query:
            if len(items) > MAX_LIMIT:
                return Answer(400, _errors("The result is too large. You should use pagination."))
            return Answer(200, {"data": items})
        if not query["limit"].isdigit() or not 1 <= int(query["limit"]) <= MAX_LIMIT:
            return Answer(400, _errors("limit: Must be between 1 and 100"))
        end = start + int(query["limit"])
        next_page = None
        if end < len(items):
            token = secrets.token_urlsafe(24)
            self._offsets[token] = end
            self.issued_offsets.append(token)
            path = f"{request.path}?limit={query['limit']}&offset={token}"
            next_page = {"offset": token, "path": path, "uri": f"{self.url}{path}"}
        return Answer(200, {"data": items[start:end], "next_page": next_page})

    def me(self, request: Request) -> Answer:
        return Answer(
            200,
            {
                "data": {
                    "gid": "1207700000000001",
                    "resource_type": "user",
                    "name": "Fleet Bot",
                    "email": "bot@acme.example.com",
                }
            },
        )

    def project(self, request: Request, gid: str) -> Answer:
        if gid not in self.projects:
            return Answer(404, _errors(f"project: Unknown object: {gid}"))
        project = self.projects[gid]
        return Answer(
            200, {"data": {"gid": gid, "resource_type": "project", "name": project["name"]}}
        )

    def custom_field_settings(self, request: Request, gid: str) -> Answer:
        if gid not in self.projects:
            return Answer(404, _errors(f"project: Unknown object: {gid}"))
        if not self.paid:
            return Answer(402, _errors(PREMIUM_ONLY))
        settings = [
            {
                "gid": f"{field}0",
                "resource_type": "custom_field_setting",
                "custom_field": dict(self.custom_fields[field]),
            }
            for field in self.projects[gid]["fields"]
        ]
        return self._page(request, settings)

    def _custom_field_values(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        fields = []
        for project in task["projects"]:
            for gid in self.projects[project]["fields"]:
                field = self.custom_fields[gid]
                value = task["values"].get(gid)
                kind = field["resource_subtype"]
                fields.append(
                    {
                        **field,
                        "type": kind,
                        "text_value": value if kind == "text" else None,
                        "number_value": value if kind == "number" else None,
                        "display_value": None if value is None else str(value),
                    }
                )
        return fields

    def _task_body(
        self, task: dict[str, Any], opt_fields: set[str] | None = None
    ) -> dict[str, Any]:
        """The task record: every field, or (with `opt_fields`, as Asana's
        "Input/output options" say) the gid and the fields asked for."""
        everything = {
            "gid": task["gid"],
            "resource_type": "task",
            "resource_subtype": "default_task",
            "name": task["name"],
            "notes": task["notes"],
            "created_at": format_rfc3339(task["created_at"]),
            "modified_at": format_rfc3339(task["modified_at"]),
            "projects": [{"gid": p, "resource_type": "project"} for p in task["projects"]],
            "custom_fields": self._custom_field_values(task),
        }
        if opt_fields is None:
            return everything
        return {k: v for k, v in everything.items() if k == "gid" or k in opt_fields}

    @staticmethod
    def _opt_fields(request: Request) -> set[str] | None:
        asked = request.query.get("opt_fields")
        if not asked:
            return None
        return {name.strip() for value in asked for name in value.split(",") if name.strip()}

    def _compact_or_asked(self, request: Request, task: dict[str, Any]) -> dict[str, Any]:
        """A listing's record: the compact task unless opt_fields ask for more."""
        asked = self._opt_fields(request)
        return self._task_body(task, asked if asked is not None else set(TASK_COMPACT))

    def project_tasks(self, request: Request, gid: str) -> Answer:
        if gid not in self.projects:
            return Answer(404, _errors(f"project: Unknown object: {gid}"))
        tasks = [
            self._compact_or_asked(request, t) for t in self.tasks.values() if gid in t["projects"]
        ]
        return self._page(request, tasks)

    def find_tasks(self, request: Request) -> Answer:
        """`GET /tasks`: "You must specify a `project` or `tag` if you do not specify
        `assignee` and `workspace`." Only `project` is served here."""
        query = {k: v[0] for k, v in request.query.items()}
        project = query.get("project")
        if project is None:
            return Answer(400, _errors("workspace: Missing input"))
        if project not in self.projects:
            return Answer(404, _errors(f"project: Unknown object: {project}"))
        since = None
        if "modified_since" in query:
            since = parse_rfc3339(query["modified_since"])
            if since is None:
                # Guess: the wording of a malformed date-time.
                return Answer(400, _errors("modified_since: Not a valid date-time"))
        tasks = [
            self._compact_or_asked(request, t)
            for t in self.tasks.values()
            if project in t["projects"] and (since is None or t["modified_at"] >= since)
        ]
        return self._page(request, tasks)

    def update_task(self, request: Request, gid: str) -> Answer:
        if gid not in self.tasks:
            return Answer(404, _errors(f"task: Unknown object: {gid}"))
        task = self.tasks[gid]
        data = (request.json or {}).get("data")
        if not isinstance(data, dict):
            return Answer(400, _errors("data: Missing input"))
        values = data.get("custom_fields") or {}
        if not isinstance(values, dict):
            return Answer(400, _errors("custom_fields: Value must be an object"))  # Guess
        if values and not self.paid:
            return Answer(402, _errors(PREMIUM_ONLY))
        on_task = {f for p in task["projects"] for f in self.projects[p]["fields"]}
        for field_gid, value in values.items():
            if field_gid not in on_task:
                # Guess: the wording of a field the task's projects lack.
                return Answer(
                    400, _errors(f"Custom field with ID {field_gid} is not on given task")
                )
            kind = self.custom_fields[field_gid]["resource_subtype"]
            if value is None:
                continue
            if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
                return Answer(400, _errors("custom_fields: Number value expected"))  # Guess
            if kind == "text" and not isinstance(value, str):
                return Answer(400, _errors("custom_fields: Text value expected"))  # Guess
            if kind not in ("number", "text"):
                # An enum takes an enum option's gid, a date a date object …; Guess:
                # the wording. No test field here has options, so any value is refused.
                return Answer(400, _errors(f"custom_fields: Invalid value for a {kind} field"))
        for field_gid, value in values.items():
            task["values"][field_gid] = value
        if values:
            task["modified_at"] = _now()
        return Answer(200, {"data": self._task_body(task)})

    def create_task(self, request: Request) -> Answer:
        if self.failing_task_creations > 0:
            self.failing_task_creations -= 1
            return Answer(500, _errors("Server Error", "6 sad squid snuggle softly"))
        if self.refused_task_creations > 0:
            self.refused_task_creations -= 1
            # Guess: a refusal of one task's own content; the length limit is unpublished.
            return Answer(400, _errors("notes: Value is too long"))
        data = (request.json or {}).get("data")
        if not isinstance(data, dict) or not (data.get("projects") or data.get("workspace")):
            return Answer(400, _errors("workspace: Missing input"))
        projects = data.get("projects") or []
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            return Answer(400, _errors("projects: Value must be an array of strings"))  # Guess
        for field in ("name", "notes"):
            if field in data and not isinstance(data[field], str):
                return Answer(400, _errors(f"{field}: Value must be a string"))  # Guess
        for index, project in enumerate(projects):
            if project not in self.projects:
                # Guess: the wording of an unknown gid in a request body.
                return Answer(400, _errors(f"projects: [{index}]: Not a recognized ID: {project}"))
        gid = self._gid()
        now = _now()
        self.tasks[gid] = {
            "gid": gid,
            "name": str(data.get("name") or ""),
            "notes": str(data.get("notes") or ""),
            "projects": list(projects),
            "values": {},
            "created_at": now,
            "modified_at": now,
        }
        if self.lost_creation_answers > 0:
            self.lost_creation_answers -= 1
            time.sleep(self.answer_delay)  # the task exists; the client stops waiting
        # "Created": the new task in `data`, and where to find it in `Location`.
        return Answer(
            201, {"data": self._task_body(self.tasks[gid])}, {"Location": f"/tasks/{gid}"}
        )
