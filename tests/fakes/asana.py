"""A fake Asana (api/1.0) on loopback, speaking the documented shapes the client
uses: bearer personal access tokens, `{"data": ...}` bodies and
`{"errors": [{"message"}]}` refusals, projects with custom field settings, tasks
with custom field values, offset pagination (`limit` ≤ 100, `next_page.offset`
an opaque token; a large list without `limit` is refused like Asana does),
`PUT /tasks/{gid}` custom field updates checked against the field's type, and
`POST /tasks` creating a task in a project."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from tests.fakes.base import Answer, FakeProvider, Request

TOKEN = "2/1207700000000001/1208000000000001:5f0e7c1d2b3a49e8a1f6c7d8e9f0a1b2"
MAX_LIMIT = 100


def _errors(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


class FakeAsana(FakeProvider):
    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.projects: dict[str, dict[str, Any]] = {}  # gid → {gid, name, fields: [gid]}
        self.custom_fields: dict[str, dict[str, Any]] = {}  # gid → {gid, name, resource_subtype}
        self.tasks: dict[str, dict[str, Any]] = {}  # gid → {gid, name, notes, projects, values}
        self._gids = itertools.count(1208000000000101)
        self._offsets: dict[str, int] = {}
        self.issued_offsets: list[str] = []  # every next_page.offset handed out, in order
        self.failing_task_creations = 0  # POST /tasks answers 500 this many times
        self.route("GET", r"/users/me", self.me)
        self.route("GET", r"/projects/(\d+)", self.project)
        self.route("GET", r"/projects/(\d+)/custom_field_settings", self.custom_field_settings)
        self.route("GET", r"/projects/(\d+)/tasks", self.project_tasks)
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

    def add_task(self, project: str, name: str, vin: str | None = None) -> str:
        """A task of the project; with `vin`, its VIN field holds it."""
        gid = self._gid()
        values = {self.field_gid(project, "VIN"): vin} if vin is not None else {}
        self.tasks[gid] = {
            "gid": gid,
            "name": name,
            "notes": "",
            "projects": [project],
            "values": values,
        }
        return gid

    def value(self, task: str, field_gid: str) -> Any:
        return self.tasks[task]["values"].get(field_gid)

    # -- the API ---------------------------------------------------------------

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
        settings = [
            {
                "gid": f"{field}0",
                "resource_type": "custom_field_setting",
                "custom_field": dict(self.custom_fields[field]),
            }
            for field in self.projects[gid]["fields"]
        ]
        return self._page(request, settings)

    def _task_body(self, task: dict[str, Any]) -> dict[str, Any]:
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
        return {
            "gid": task["gid"],
            "resource_type": "task",
            "name": task["name"],
            "custom_fields": fields,
        }

    def project_tasks(self, request: Request, gid: str) -> Answer:
        if gid not in self.projects:
            return Answer(404, _errors(f"project: Unknown object: {gid}"))
        tasks = [self._task_body(t) for t in self.tasks.values() if gid in t["projects"]]
        return self._page(request, tasks)

    def update_task(self, request: Request, gid: str) -> Answer:
        if gid not in self.tasks:
            return Answer(404, _errors(f"task: Unknown object: {gid}"))
        task = self.tasks[gid]
        data = (request.json or {}).get("data")
        if not isinstance(data, dict):
            return Answer(400, _errors("data: Missing input"))
        on_task = {f for p in task["projects"] for f in self.projects[p]["fields"]}
        for field_gid, value in (data.get("custom_fields") or {}).items():
            if field_gid not in on_task:
                return Answer(
                    400, _errors(f"Custom field with ID {field_gid} is not on given task")
                )
            kind = self.custom_fields[field_gid]["resource_subtype"]
            if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
                return Answer(400, _errors("custom_fields: Number value expected"))
            if kind == "text" and not isinstance(value, str):
                return Answer(400, _errors("custom_fields: Text value expected"))
            task["values"][field_gid] = value
        return Answer(200, {"data": self._task_body(task)})

    def create_task(self, request: Request) -> Answer:
        if self.failing_task_creations > 0:
            self.failing_task_creations -= 1
            return Answer(500, _errors("Server Error"))
        data = (request.json or {}).get("data")
        if not isinstance(data, dict) or not data.get("projects"):
            return Answer(400, _errors("workspace: Missing input"))
        for project in data["projects"]:
            if project not in self.projects:
                return Answer(400, _errors(f"projects: [0]: Unknown object: {project}"))
        gid = self._gid()
        self.tasks[gid] = {
            "gid": gid,
            "name": str(data.get("name") or ""),
            "notes": str(data.get("notes") or ""),
            "projects": list(data["projects"]),
            "values": {},
        }
        task = self.tasks[gid]
        return Answer(
            201,
            {
                "data": {
                    **self._task_body(task),
                    "notes": task["notes"],
                    "projects": [{"gid": p} for p in task["projects"]],
                }
            },
        )
