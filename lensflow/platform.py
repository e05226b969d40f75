"""The local platform on 127.0.0.1: Prefect server, a process work pool and its worker, the deployments of
prefect.yaml, and the MLflow UI. `lensflow up` starts what is not running; `lensflow down` stops what it started.

Both servers require credentials (lensflow/credentials.py): the Prefect API Basic Authentication, the MLflow UI
MLflow's basic-auth app with an admin and a read-only viewer. Secrets travel in environment variables and
owner-only files, never on command lines or in logs."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from lensflow import credentials
from lensflow.core.runtime import OFFLINE_ENV
from lensflow.core.settings import Settings
from lensflow.core.storage import owner_only_file
from lensflow.credentials import Credentials

HOST = "127.0.0.1"


class PlatformError(RuntimeError):
    pass


def code_root(settings: Settings) -> Path:
    """The folder holding prefect.yaml: the project root, else the checkout lensflow runs from."""
    for folder in (settings.root, Path(__file__).resolve().parents[1]):
        if (folder / "prefect.yaml").exists():
            return folder
    raise PlatformError(f"no prefect.yaml in {settings.root} or in the lensflow checkout")


def work_pools(prefect_yaml: Path) -> list[str]:
    spec = yaml.safe_load(prefect_yaml.read_text()) or {}
    return sorted({d["work_pool"]["name"] for d in spec.get("deployments", []) if d.get("work_pool", {}).get("name")})


@dataclass
class Platform:
    settings: Settings

    @property
    def state_dir(self) -> Path:
        return self.settings.path(".platform")

    @property
    def prefect_url(self) -> str:
        return f"http://{HOST}:{self.settings.prefect_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.settings.mlflow_port}"

    @cached_property
    def credentials(self) -> Credentials:
        """The platform's credentials, made on first use (owner-only in .platform/credentials.json); read once."""
        return credentials.load_or_create(self.state_dir)

    def auth_header(self) -> dict[str, str]:
        token = base64.b64encode(self.credentials.prefect_auth_string.encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def env(self) -> dict[str, str]:
        """What every process of the platform gets: offline settings, the API URL and the client credential."""
        env = {**OFFLINE_ENV, **os.environ}
        env.setdefault("PREFECT_HOME", str(self.settings.path(".prefect")))
        env["PREFECT_API_URL"] = f"{self.prefect_url}/api"
        env["PREFECT_SERVER_API_HOST"] = HOST
        env["PREFECT_SERVER_API_PORT"] = str(self.settings.prefect_port)
        env["PREFECT_UI_API_URL"] = f"{self.prefect_url}/api"
        env["PREFECT_WORKER_WEBSERVER_HOST"] = HOST  # a worker's health check (--with-healthcheck) defaults to 0.0.0.0
        env["PREFECT_RUNNER_SERVER_HOST"] = HOST
        env["LENSFLOW_ROOT"] = str(self.settings.root)
        env["PREFECT_API_AUTH_STRING"] = self.credentials.prefect_auth_string
        return env

    def server_env(self) -> dict[str, str]:
        """The Prefect server's own: it answers 401 to any API request without the credential."""
        return {"PREFECT_SERVER_API_AUTH_STRING": self.credentials.prefect_auth_string}

    def server_command(self) -> list[str]:
        """The Prefect server, bound to 127.0.0.1."""
        return [self._bin("prefect"), "server", "start", "--host", HOST, "--port", str(self.settings.prefect_port)]

    def worker_command(self, pool: str) -> list[str]:
        """A process worker for `pool` (it listens on no port)."""
        return [self._bin("prefect"), "worker", "start", "--pool", pool, "--type", "process"]

    def mlflow_command(self) -> tuple[list[str], dict[str, str]]:
        """The MLflow UI bound to 127.0.0.1 behind MLflow's basic-auth app, and the environment it needs: the
        backend store URI and the admin password travel in environment variables, not on the command line,
        where any local user could read them."""
        creds = self.credentials
        return (
            [
                self._bin("mlflow"),
                "server",
                "--app-name",
                "basic-auth",
                "--default-artifact-root",
                self.settings.artifact_location,
                "--host",
                HOST,
                "--port",
                str(self.settings.mlflow_port),
                "--workers",
                "1",
            ],
            {
                "MLFLOW_BACKEND_STORE_URI": self.settings.tracking_uri,
                "MLFLOW_AUTH_CONFIG_PATH": str(self.mlflow_auth_config()),
                "MLFLOW_AUTH_ADMIN_PASSWORD": creds.mlflow_admin_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": creds.mlflow_secret_key,
            },
        )

    def mlflow_auth_config(self) -> Path:
        """MLflow's basic-auth configuration: users in .platform/mlflow-auth.db; READ for users without an
        explicit permission (the viewer); `admin` may do everything."""
        path = self.state_dir / "mlflow-auth.ini"
        owner_only_file(
            path,
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{self.state_dir / 'mlflow-auth.db'}\n"
            f"admin_username = {self.credentials.mlflow_admin}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n",
        )
        return path

    def ensure_mlflow_viewer(self) -> None:
        """Create the read-only `viewer` user once (MLflow's users API, as the admin)."""
        creds = self.credentials
        auth = base64.b64encode(f"{creds.mlflow_admin}:{creds.mlflow_admin_password}".encode()).decode()
        headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
        get = urllib.request.Request(
            f"{self.mlflow_url}/api/2.0/mlflow/users/get?username={creds.mlflow_viewer}", headers=headers
        )
        try:
            urllib.request.urlopen(get, timeout=10).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise PlatformError(
                    f"MLflow refused the admin credential ({exc.code}): its users in "
                    f"{self.state_dir / 'mlflow-auth.db'} were made with other credentials; with the platform "
                    "down, remove that file to start over"
                ) from exc
        body = json.dumps({"username": creds.mlflow_viewer, "password": creds.mlflow_viewer_password}).encode()
        create = urllib.request.Request(
            f"{self.mlflow_url}/api/2.0/mlflow/users/create", data=body, method="POST", headers=headers
        )
        urllib.request.urlopen(create, timeout=10).close()

    def _bin(self, name: str) -> str:
        exe = Path(sys.executable).parent / name
        return str(exe) if exe.exists() else name

    def _pids(self) -> dict[str, int]:
        f = self.state_dir / "pids.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def _save_pids(self, pids: dict[str, int]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "pids.json").write_text(json.dumps(pids, indent=2))

    def running(self) -> dict[str, int]:
        return {name: pid for name, pid in self._pids().items() if _alive(pid)}

    def _start(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=self.env() | (env or {}),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pids = self._pids()
        pids[name] = proc.pid
        self._save_pids(pids)
        return proc.pid

    def _cli(self, *args: str, cwd: Path) -> str:
        env = self.env() | {"PWD": str(cwd)}  # prefect.yaml's pull step resolves {{ $PWD }} at deploy time
        proc = subprocess.run([self._bin("prefect"), *args], cwd=cwd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PlatformError(f"`prefect {' '.join(args)}` failed:\n{(proc.stdout + proc.stderr).strip()[-3000:]}")
        return proc.stdout

    def _wait(self, name: str, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ok(url):
                return
            pid = self._pids().get(name)
            if pid and not _alive(pid):
                raise PlatformError(f"{name} exited while starting; see {self.state_dir / 'logs' / (name + '.log')}")
            time.sleep(0.5)
        raise PlatformError(
            f"{name} did not answer at {url} within {timeout:.0f} s; see {self.state_dir / 'logs' / (name + '.log')}"
        )

    def up(self, mlflow: bool = True, log=print) -> dict:
        """Start the server, create the pools, deploy everything in prefect.yaml, start one worker per pool
        and the MLflow UI. Idempotent: what already runs (started by lensflow) is kept."""
        t0 = time.perf_counter()
        root = code_root(self.settings)
        running = self.running()
        if "prefect-server" not in running:
            if _ok(f"{self.prefect_url}/api/health"):
                raise PlatformError(
                    f"port {self.settings.prefect_port} already serves a Prefect API not started by lensflow: "
                    "stop it or set LENSFLOW_PREFECT_PORT"
                )
            self._start("prefect-server", self.server_command(), root, self.server_env())
        self._wait("prefect-server", f"{self.prefect_url}/api/health", 120)
        if _ok(f"{self.prefect_url}/api/admin/version"):  # answered without credentials: started before auth
            log(
                "warning: this Prefect server answers without credentials (started by an older lensflow up): "
                "`lensflow down && lensflow up` restarts it with authentication"
            )
        log(f"Prefect server  {self.prefect_url}  ({time.perf_counter() - t0:.1f} s)")
        pools = work_pools(root / "prefect.yaml")
        for pool in pools:
            self._cli("work-pool", "create", pool, "--type", "process", "--overwrite", cwd=root)
        self._cli("--no-prompt", "deploy", "--all", cwd=root)
        deployments = self.deployments()
        log(f"deployed        {', '.join(deployments)}  ({time.perf_counter() - t0:.1f} s)")
        self.configure_server(log)
        for pool in pools:
            if f"worker-{pool}" not in running:
                self._start(f"worker-{pool}", self.worker_command(pool), root)
        log(f"workers         {', '.join(pools)}")
        if mlflow:
            if "mlflow" not in running:
                if _ok(self.mlflow_url):
                    raise PlatformError(
                        f"port {self.settings.mlflow_port} is in use by a server not started by lensflow: "
                        "stop it or set LENSFLOW_MLFLOW_PORT"
                    )
                self.settings.path("mlflow").mkdir(parents=True, exist_ok=True)
                cmd, env = self.mlflow_command()
                self._start("mlflow", cmd, root, env)
            self._wait("mlflow", f"{self.mlflow_url}/health", 120)
            self.ensure_mlflow_viewer()
            log(f"MLflow UI       {self.mlflow_url}  (users admin and viewer: read-only)")
        env_file = credentials.write_env(self.state_dir, self.credentials, self.prefect_url, self.mlflow_url)
        log(f"credentials     {self.state_dir / credentials.FILE} (owner-only); `source {env_file}` for a shell")
        seconds = round(time.perf_counter() - t0, 1)
        log(f"up in {seconds} s; logs in {self.state_dir / 'logs'}; `lensflow down` (or `make down`) stops it")
        return {
            "prefect": self.prefect_url,
            "mlflow": self.mlflow_url if mlflow else None,
            "deployments": deployments,
            "pools": pools,
            "seconds": seconds,
        }

    def _filter(self, kind: str) -> list[dict]:
        """Every object of `kind` on the server (POST /api/<kind>/filter)."""
        request = urllib.request.Request(
            f"{self.prefect_url}/api/{kind}/filter",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json", **self.auth_header()},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)

    def configure_server(self, log=print) -> None:
        """What lensflow keeps on the server besides deployments: the global writer limit (tasks/writer_slot.py)
        and the notification automations (lensflow/notify.py)."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        from lensflow import notify
        from lensflow.tasks.writer_slot import NAME, ensure_limit

        secret = lambda v: v.get_secret_value() if v is not None else None  # noqa: E731
        with temporary_settings(
            {PREFECT_API_URL: f"{self.prefect_url}/api", PREFECT_API_AUTH_STRING: self.credentials.prefect_auth_string}
        ):
            ensure_limit()
            log(f"writer limit    {NAME} (1 slot: retrain, reindex and promote runs wait for each other)")
            notify.install(secret(self.settings.notify_reviewers_url), secret(self.settings.notify_engineers_url), log)

    def deployments(self) -> list[str]:
        deps = self._filter("deployments")
        flows = {f["id"]: f["name"] for f in self._filter("flows")}
        return sorted(f"{flows.get(d['flow_id'], '?')}/{d['name']}" for d in deps)

    def down(self, log=print) -> list[str]:
        """Stop workers first (SIGINT, as Prefect asks), then the servers. Returns what was stopped."""
        pids = self._pids()
        order = sorted(pids, key=lambda n: (not n.startswith("worker-"), n))
        stopped = []
        for name in order:
            if _alive(pids[name]):
                _stop(pids[name], first=signal.SIGINT if name.startswith("worker-") else signal.SIGTERM)
                stopped.append(name)
                log(f"stopped {name} (pid {pids[name]})")
        (self.state_dir / "pids.json").unlink(missing_ok=True)
        if not stopped:
            log("nothing to stop")
        return stopped


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def _stop(pid: int, first: signal.Signals, grace: float = 20) -> None:
    """Signal the process group, twice if it lingers, then SIGKILL."""
    for sig, wait in ((first, grace / 2), (first, grace / 2), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)
