"""Secrets at rest: MultiFernet over FLEETHOOK_ENCRYPTION_KEYS (the first key
encrypts, every key decrypts), and the `EncryptedText` column type that stores
only ciphertext."""

from __future__ import annotations

from typing import Any, cast

from cryptography.fernet import Fernet, MultiFernet
from flask import Flask, current_app
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

_FERNET = "fleethook.fernet"


def init_encryption(app: Flask) -> None:
    keys = app.config["FLEETHOOK_ENCRYPTION_KEYS"]
    app.extensions[_FERNET] = MultiFernet([Fernet(key) for key in keys])


def _fernet() -> MultiFernet:
    return cast(MultiFernet, current_app.extensions[_FERNET])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _fernet().decrypt(ciphertext.encode()).decode()


def mask(secret: str, visible: int = 4) -> str:
    """What people may see of a secret: its last few characters."""
    return "•" * 8 + secret[-visible:] if len(secret) > visible * 2 else "•" * 8


class EncryptedText(TypeDecorator[str]):
    """A string column whose database value is Fernet ciphertext."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else decrypt(value)
