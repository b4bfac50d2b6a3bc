"""Settings, read from the environment (prefix ``SMSGATE_``) and an optional ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSGATE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{Path('smsgate.db').absolute()}",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    redis_url: str | None = Field(
        default=None, description="Redis for counters and bans shared by many processes."
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "INFO"
    log_json: bool = False
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the admin API; unset disables the admin API."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Let callbacks reach loopback and private addresses (tests, on-premise).",
    )
    webhook_timeout_seconds: float = 10.0
    webhook_max_age_seconds: int = 3 * 24 * 3600
    worker_concurrency: int = 32
    worker_poll_seconds: float = 0.2
    job_lease_seconds: float = 60.0
    job_max_attempts: int = 12
    receipt_sweep_seconds: float = Field(
        default=0.5,
        ge=0,
        description="How often the worker applies receipts stored before their part was "
        "written (HTTP intake, another process's link, a restart); 0 turns the sweep off.",
    )
    receipt_sweep_window_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Receipts received this long ago at most are swept; older unmatched "
        "ones are left as they are.",
    )
    public_url: str = Field(
        default="", description="Base URL merchants use to reach this gateway (for links)."
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto",
        description="Event loop of serve/demo/simulator/worker: auto takes uvloop when installed.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
