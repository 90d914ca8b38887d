"""The `integration` table: a Target whose messages go to a provider's API. One
row per provider connection and, for providers that sync one vehicle attribute,
per attribute ("a separate ID for each integration")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.database import UTCDateTime
from core.encryption import EncryptedText
from outbox.models import Payload, Target


class Integration(Target):
    __tablename__ = "integration"

    id: Mapped[int] = mapped_column(ForeignKey("target.id", ondelete="CASCADE"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    # Asana and Agile Fleet: the one vehicle attribute kept in sync.
    vehicle_attribute: Mapped[str | None] = mapped_column(String(20))
    # Settings that are not secret (account id, tenant id, project, toggles …).
    options: Mapped[dict[str, Any]] = mapped_column(Payload, default=dict)
    # API keys, client secrets and OAuth tokens: a JSON object, encrypted at rest.
    credentials: Mapped[str] = mapped_column(EncryptedText)
    # VIN → the provider's id of that vehicle, refreshed periodically and on a miss.
    vehicle_map: Mapped[dict[str, Any]] = mapped_column(Payload, default=dict)
    vehicle_map_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # VINs of the account's vehicles the provider does not know (shown on its page).
    unmatched_vins: Mapped[list[str]] = mapped_column(Payload, default=list)
    # What the provider module keeps between sends (its own keys: open faults,
    # drivers without a technician, …); written with the drain's results.
    provider_state: Mapped[dict[str, Any]] = mapped_column(Payload, default=dict)
    # The release form, for providers that receive vehicle locations.
    release_signer_name: Mapped[str | None] = mapped_column(String(100))
    release_signer_title: Mapped[str | None] = mapped_column(String(100))
    release_signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    release_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    release_client_address: Mapped[str | None] = mapped_column(String(45))

    __mapper_args__ = {"polymorphic_identity": "integration"}
