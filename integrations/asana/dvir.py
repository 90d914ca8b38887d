"""The task a DVIR with defects opens in Asana, and which of an account's Asana
integrations on one project opens it: one task per DVIR, found again by its
reference (in its name and notes) when an attempt's answer was lost."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.extensions import db
from core.times import format_rfc3339
from integrations.attributes import defect_lines
from integrations.models import Integration
from outbox.models import HELD, TargetStatus

KEY = "asana"
# The notes line that marks the task opened for one DVIR.
REFERENCE_PREFIX = "Fleethook DVIR reference:"


def opens_dvir_tasks(integration: Integration) -> bool:
    """Whether this integration opens the DVIR tasks of its project: of the
    account's Asana integrations on the project (not disabled), the first of those
    not held (paused, needing attention), then of those whose attribute is the
    last DVIR, then the oldest. Every integration reaches the same answer during
    one fan-out, so each DVIR opens one task."""
    project = (integration.options or {}).get("project_gid")
    if not project or integration.id is None:
        return True
    query = select(Integration).where(
        Integration.account_id == integration.account_id,
        Integration.provider == KEY,
        Integration.status != TargetStatus.DISABLED,
    )
    with db.session.no_autoflush:  # the fan-out's own pending rows play no part here
        candidates = list(db.session.scalars(query))
    siblings = [
        other for other in candidates if (other.options or {}).get("project_gid") == project
    ]
    if integration not in siblings:
        return True
    opener = min(
        siblings,
        key=lambda other: (
            other.status in HELD,
            other.vehicle_attribute != "last_dvir",
            other.id,
        ),
    )
    return opener.id == integration.id


def dvir_reference(vin: str, when: datetime) -> str:
    """What marks the task of one DVIR: the vehicle and the DVIR's time."""
    return f"{REFERENCE_PREFIX} {vin} {format_rfc3339(when)}"


def defect_task(name: str, vin: str, when: datetime, dvir: Mapping[str, Any]) -> dict[str, str]:
    """The task a DVIR with defects opens: its name and notes (both name the DVIR,
    so an attempt whose answer was lost finds the task again), and its reference."""
    defects = list(dvir.get("defects") or [])
    driver = dvir.get("driver") or "The driver"
    count = f"{len(defects)} defect" + ("s" if len(defects) > 1 else "")
    notes = [f"{driver} reported {count} on {name} (VIN {vin}) at {format_rfc3339(when)}."]
    if dvir.get("safety_status"):
        notes.append(f"Safety status: {dvir['safety_status']}")
    notes.append("")
    notes += [f"- {line}" for line in defect_lines(defects)]
    reference = dvir_reference(vin, when)
    notes += ["", "Opened by Fleethook from the driver's vehicle inspection report.", reference]
    return {
        "name": f"DVIR defects: {name} ({vin}) at {format_rfc3339(when)}",
        "notes": "\n".join(notes),
        "reference": reference,
    }
