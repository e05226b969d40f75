"""The platform's own credentials: generated on the first `lensflow up`, kept owner-only in `.platform/`.

- Prefect: one Basic Authentication string for the server and every client (workers, flows, the CLI).
- MLflow UI: MLflow's basic-auth app with an `admin` (read/write) and a read-only `viewer`.
`.platform/env` holds the client settings for a shell (`source .platform/env`). Nothing here is ever
printed, logged, or passed on a command line (where `ps` would show it).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from lensflow.core.storage import owner_only_file

FILE = "credentials.json"
ENV_FILE = "env"


@dataclass(frozen=True)
class Credentials:
    prefect_user: str
    prefect_password: str
    mlflow_admin_password: str
    mlflow_viewer_password: str
    mlflow_secret_key: str  # signs the MLflow UI's session cookies (MLFLOW_FLASK_SERVER_SECRET_KEY)
    mlflow_admin: str = "admin"
    mlflow_viewer: str = "viewer"

    @property
    def prefect_auth_string(self) -> str:
        return f"{self.prefect_user}:{self.prefect_password}"

    @classmethod
    def generate(cls) -> Credentials:
        token = lambda: secrets.token_urlsafe(24)  # noqa: E731  (192 bits each)
        return cls("lensflow", token(), token(), token(), secrets.token_hex(32))

    def secrets(self) -> list[str]:
        """Every secret value, for scans that prove none leaked."""
        return [self.prefect_password, self.mlflow_admin_password, self.mlflow_viewer_password, self.mlflow_secret_key]


def load(state_dir: Path) -> Credentials | None:
    """The platform's credentials, or None before the first `lensflow up` (or when this user cannot read them)."""
    try:
        return Credentials(**json.loads((state_dir / FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def load_or_create(state_dir: Path) -> Credentials:
    creds = load(state_dir)
    if creds is None:
        if (state_dir / FILE).exists():
            raise PermissionError(f"{state_dir / FILE} exists but is not readable or not valid: fix or remove it")
        creds = Credentials.generate()
        owner_only_file(state_dir / FILE, json.dumps(asdict(creds), indent=2) + "\n")
    return creds


def client_env(creds: Credentials, prefect_url: str, mlflow_url: str) -> dict[str, str]:
    """What a client needs to reach both servers as the platform's engineer."""
    return {
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_API_AUTH_STRING": creds.prefect_auth_string,
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_USERNAME": creds.mlflow_admin,
        "MLFLOW_TRACKING_PASSWORD": creds.mlflow_admin_password,
    }


def write_env(state_dir: Path, creds: Credentials, prefect_url: str, mlflow_url: str) -> Path:
    """`.platform/env`: `source` it to point a shell's Prefect and MLflow clients at the authenticated platform."""
    lines = [
        "# lensflow platform client settings (written by `lensflow up`; owner-only; never commit or share).",
        "# Usage: source .platform/env",
        *(f"export {k}={shlex.quote(v)}" for k, v in client_env(creds, prefect_url, mlflow_url).items()),
    ]
    path = state_dir / ENV_FILE
    owner_only_file(path, "\n".join(lines) + "\n")
    return path


def adopt(state_dir: Path, prefect_url: str) -> None:
    """A command pointed at this project's own platform (PREFECT_API_URL) authenticates with the platform's
    credential when the shell has none and this user can read it (the platform admin's shell)."""
    aimed = os.environ.get("PREFECT_API_URL", "").startswith(prefect_url.rstrip("/") + "/")
    if aimed and not os.environ.get("PREFECT_API_AUTH_STRING"):
        creds = load(state_dir)
        if creds is not None:
            os.environ["PREFECT_API_AUTH_STRING"] = creds.prefect_auth_string
