"""Portal forms of the accounts blueprint. Rules beyond "filled in" live in the
domain functions, which the API shares; views put their errors on these fields."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import InputRequired

from accounts.models import Role


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired("Enter your email address.")])
    password = PasswordField("Password", validators=[InputRequired("Enter your password.")])


class TokenForm(FlaskForm):
    name = StringField("Name", description="What will use it, e.g. “Dispatch system”.")


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
