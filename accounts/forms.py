"""Portal forms of the accounts blueprint. Rules beyond "filled in" live in the
domain functions, which the API shares; views put their errors on these fields."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import InputRequired, Length

from accounts.models import MAX_EMAIL_LENGTH, Role, Scope
from accounts.tokens import SCOPE_DESCRIPTIONS
from core.errors import ValidationError


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            InputRequired("Enter your email address."),
            # No account has a longer one; the limiter never sees such a string.
            Length(max=MAX_EMAIL_LENGTH, message=f"At most {MAX_EMAIL_LENGTH} characters."),
        ],
    )
    password = PasswordField("Password", validators=[InputRequired("Enter your password.")])


class TokenForm(FlaskForm):
    name = StringField("Name", description="What will use it, e.g. “Dispatch system”.")
    scope = SelectField(
        "Scope",
        choices=[SelectChoice(scope.value, SCOPE_DESCRIPTIONS[scope]) for scope in Scope],
        # Any posted value reaches issue_token, which names a bad one on the field.
        validate_choice=False,
    )
    expires_at = DateTimeLocalField(
        "Expires (UTC)",
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        description="Leave empty for a token that does not expire.",
    )

    def expiry(self) -> datetime | None:
        """The expiry as an aware UTC time, None if left empty; a ValidationError
        if it is not a date and time."""
        text = " ".join(self.expires_at.raw_data or []).strip()
        if not text:
            return None
        if self.expires_at.data is None:
            raise ValidationError({"expires_at": ["Give a date and time, e.g. 2027-01-31T17:00."]})
        return self.expires_at.data.replace(tzinfo=UTC)


class UserForm(FlaskForm):
    email = EmailField("Email")
    role = SelectField(
        "Role",
        choices=[
            SelectChoice(Role.MEMBER.value, "Member — may look"),
            SelectChoice(Role.ADMIN.value, "Admin — may change"),
        ],
    )
    password = PasswordField("Initial password", description="At least 12 characters.")
