"""Configuration from the environment, and the refusals to start."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from app import create_app
from core.config import ConfigError, load_config

KEY = Fernet.generate_key().decode()


def production(**overrides: str) -> dict[str, str]:
    return {"SECRET_KEY": "s" * 40, "FLEETHOOK_ENCRYPTION_KEYS": KEY, **overrides}


def test_defaults_are_the_embedded_ones(tmp_path):
    config = load_config(production(), str(tmp_path))
    assert config["FLEETHOOK_ENV"] == "production"
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/fleethook.db"
    assert config["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert config["FLEETHOOK_ALLOW_LOCAL_NETWORK"] is False
    assert config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_production_refuses_to_start_without_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(production(SECRET_KEY=""), str(tmp_path))


def test_production_refuses_to_start_without_encryption_keys(tmp_path):
    with pytest.raises(ConfigError, match="FLEETHOOK_ENCRYPTION_KEYS"):
        load_config(production(FLEETHOOK_ENCRYPTION_KEYS=""), str(tmp_path))


def test_create_app_refuses_production_without_secret_key(monkeypatch):
    monkeypatch.setenv("FLEETHOOK_ENV", "production")
    monkeypatch.delenv("SECRET_KEY")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()


@pytest.mark.parametrize("env", ["development", "testing"])
def test_development_and_testing_start_without_secret_key(tmp_path, env):
    with pytest.warns(UserWarning, match="SECRET_KEY is not set"):
        config = load_config(
            {"FLEETHOOK_ENV": env, "FLEETHOOK_ENCRYPTION_KEYS": KEY}, str(tmp_path)
        )
    assert len(config["SECRET_KEY"]) >= 32


def test_encryption_keys_are_a_comma_separated_list(tmp_path):
    second = Fernet.generate_key().decode()
    config = load_config(production(FLEETHOOK_ENCRYPTION_KEYS=f" {KEY}, {second} "), str(tmp_path))
    assert config["FLEETHOOK_ENCRYPTION_KEYS"] == [KEY, second]


def test_a_malformed_encryption_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="key 2 is not a Fernet key"):
        load_config(production(FLEETHOOK_ENCRYPTION_KEYS=f"{KEY},not-a-key"), str(tmp_path))


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("on", True), ("0", False), ("", False)]
)
def test_allow_local_network_is_an_explicit_switch(tmp_path, value, expected):
    config = load_config(production(FLEETHOOK_ALLOW_LOCAL_NETWORK=value), str(tmp_path))
    assert config["FLEETHOOK_ALLOW_LOCAL_NETWORK"] is expected


def test_a_misspelt_switch_is_an_error_not_off(tmp_path):
    with pytest.raises(ConfigError, match="FLEETHOOK_ALLOW_LOCAL_NETWORK"):
        load_config(production(FLEETHOOK_ALLOW_LOCAL_NETWORK="enabled"), str(tmp_path))


def test_unknown_environment_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="FLEETHOOK_ENV"):
        load_config(production(FLEETHOOK_ENV="staging"), str(tmp_path))


@pytest.mark.parametrize(
    "url",
    ["postgres://u@db:5432/fh", "postgresql://u@db:5432/fh", "postgresql+psycopg://u@db:5432/fh"],
)
def test_postgres_urls_use_psycopg_3(tmp_path, url):
    config = load_config(production(DATABASE_URL=url), str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db:5432/fh"


def test_session_cookie_is_secure_outside_development(tmp_path):
    assert load_config(production(), str(tmp_path))["SESSION_COOKIE_SECURE"] is True
    development = load_config(production(FLEETHOOK_ENV="development"), str(tmp_path))
    assert development["SESSION_COOKIE_SECURE"] is False


def test_factory_takes_test_config_over_environment(make_app):
    app = make_app(LOGIN_FAILURE_LIMIT="2 per minute")
    assert app.config["LOGIN_FAILURE_LIMIT"] == "2 per minute"
    assert app.config["TESTING"] is True


def test_a_lease_shorter_than_the_slowest_request_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="FLEETHOOK_LEASE_SECONDS"):
        load_config(production(FLEETHOOK_LEASE_SECONDS="10"), str(tmp_path))


@pytest.mark.parametrize(
    ("env", "method"),
    [("production", "scrypt"), ("development", "scrypt"), ("testing", "pbkdf2:sha256:1000")],
)
def test_only_the_test_suite_hashes_passwords_cheaply(tmp_path, env, method):
    environ = production(FLEETHOOK_ENV=env)
    assert load_config(environ, str(tmp_path))["PASSWORD_HASH_METHOD"] == method
