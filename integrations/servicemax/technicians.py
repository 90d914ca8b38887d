"""Which ServiceMax technician each driver is (a mapping in the integration's
options, driver name → Technician record Id, edited on the integration's page), and
the drivers seen without one (`provider_state["unmapped_drivers"]`, [{"id", "name",
"since"}], listed on that page): their positions are not sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.errors import ValidationError
from core.times import format_rfc3339
from integrations.models import Integration

# Salesforce record Ids: 15 characters (case-sensitive) or 18 (case-safe).
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
MAX_TECHNICIANS = 1000
MAX_DRIVER_NAME = 100  # as fleet.models.Driver.name
# Drivers without a technician the integration remembers (the oldest stay).
MAX_UNMAPPED_DRIVERS = 200


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def set_technicians(integration: Integration, text: str) -> None:
    """Replace the mapping from lines "Driver Name = a0B…" (blank lines skipped);
    ValidationError lists every bad line under "technicians". Drivers it maps
    leave the list of drivers without a technician."""
    mapping: dict[str, str] = {}
    seen: dict[str, int] = {}
    problems: list[str] = []
    lines = text.splitlines()
    if len(lines) > MAX_TECHNICIANS:
        raise ValidationError({"technicians": [f"At most {MAX_TECHNICIANS} lines."]})
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, equals, record_id = line.partition("=")
        name, record_id = " ".join(name.split()), record_id.strip()
        if not equals or not name or not record_id:
            problems.append(f'Line {number}: write it as "Driver Name = Technician record Id".')
        elif len(name) > MAX_DRIVER_NAME:
            problems.append(
                f"Line {number}: a driver name has at most {MAX_DRIVER_NAME} characters."
            )
        elif not RECORD_ID.fullmatch(record_id):
            problems.append(
                f'Line {number}: "{record_id[:40]}" is not a Salesforce record Id (15 or 18 '
                "letters and digits, like a0B5e00000AbCdEFGH)."
            )
        elif _name_key(name) in seen:
            problems.append(
                f"Line {number}: {name} is already on line {seen[_name_key(name)]}; a driver "
                "is one technician."
            )
        else:
            seen[_name_key(name)] = number
            mapping[name] = record_id
    if problems:
        raise ValidationError({"technicians": problems})
    integration.options = {**(integration.options or {}), "technicians": mapping}
    still = [d for d in unmapped_drivers(integration) if _name_key(str(d["name"])) not in seen]
    if len(still) != len(unmapped_drivers(integration)):
        integration.provider_state = {
            **(integration.provider_state or {}),
            "unmapped_drivers": still,
        }


def technicians_text(integration: Integration) -> str:
    """The mapping as the form shows it, one "Driver Name = Id" a line."""
    mapping = (integration.options or {}).get("technicians") or {}
    return "\n".join(f"{name} = {record_id}" for name, record_id in mapping.items())


def technician_of(integration: Integration, driver_name: str) -> str | None:
    mapping = (integration.options or {}).get("technicians") or {}
    wanted = _name_key(driver_name)
    for name, record_id in mapping.items():
        if _name_key(name) == wanted:
            return str(record_id)
    return None


def unmapped_drivers(integration: Integration) -> list[dict[str, Any]]:
    """Drivers seen driving whose positions went nowhere because no technician is
    mapped to them: [{"id", "name", "since"}], the first seen first."""
    return list((integration.provider_state or {}).get("unmapped_drivers") or [])


def note_unmapped(integration: Integration, driver: Mapping[str, Any], when: datetime) -> None:
    """Remember a driver without a technician (once; written only when new, so
    the fan-out that calls this rarely writes the integration's row)."""
    listed = unmapped_drivers(integration)
    name = str(driver.get("name") or "")
    if any(_name_key(str(d.get("name") or "")) == _name_key(name) for d in listed):
        return
    if len(listed) >= MAX_UNMAPPED_DRIVERS:
        return
    listed.append({"id": driver.get("id"), "name": name, "since": format_rfc3339(when)})
    integration.provider_state = {**(integration.provider_state or {}), "unmapped_drivers": listed}
