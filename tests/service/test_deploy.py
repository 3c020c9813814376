"""The container files, read carefully since no Docker engine runs here: docker-compose.yml
(health checks, no password written in it, the env file it names), the Dockerfile's check and
pinned install, and the ``aer beat-health`` command beat's check runs."""

from __future__ import annotations

import os
import re
import time
import tomllib

import pytest
import yaml
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
#: The other compose files: workers on other machines, and the main machine's published ports.
WORKER_COMPOSE = REPO / "docker-compose.worker.yml"
SHARE_COMPOSE = REPO / "docker-compose.share.yml"
COMPOSE_FILES = (COMPOSE, WORKER_COMPOSE, SHARE_COMPOSE)
SECRET_KEY = re.compile(r"pass(word)?|secret|token|access_key|private_key", re.I)
URL_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def worker_compose() -> dict:
    return yaml.safe_load(WORKER_COMPOSE.read_text())


def written_secrets(node, path: str = "") -> list[str]:
    """Where a password-like value is written literally (not a ``${VARIABLE}`` to fill in)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if SECRET_KEY.search(str(key)) and isinstance(value, str | int):
                if not str(value).startswith("${"):
                    found.append(where)
            found += written_secrets(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += written_secrets(item, f"{path}[{i}]")
    elif isinstance(node, str):
        for key, _, value in re.findall(r"(\w*(pass|secret|token)\w*)=(\S+)", node, re.I):
            if not value.startswith(("${", "$$")):
                found.append(f"{path} ({key}=...)")
        for password in URL_PASSWORD.findall(node):
            if not password.startswith("${"):
                found.append(f"{path} (URL password)")
    return found


def test_no_password_is_written_in_compose(compose):
    for path in COMPOSE_FILES:
        assert written_secrets(yaml.safe_load(path.read_text())) == [], path.name
    # The check catches what the file used to hold.
    old = {"environment": {"POSTGRES_PASSWORD": "aer", "URL": "postgresql://aer:aer@db/aer"}}
    assert len(written_secrets(old)) == 2
    assert written_secrets({"command": ["x", "--password=hunter2"]}) == [
        ".command[1] (password=...)"
    ]


def test_env_files_exist_and_fill_every_required_variable(compose, worker_compose):
    env_files = []
    services = list(compose["services"].items()) + list(worker_compose["services"].items())
    for name, service in services:
        for entry in service.get("env_file", []):
            entry = {"path": entry} if isinstance(entry, str) else entry
            env_files.append((name, entry["path"], entry.get("required", True)))
    assert env_files, "compose names no env file"
    for service, path, required in env_files:
        assert not required or (REPO / path).is_file(), f"{service}: {path} is missing"
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.M))
    needed = {
        name
        for path in COMPOSE_FILES
        for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", path.read_text())
    }
    assert needed and needed <= documented
    assert ".env" in (REPO / ".gitignore").read_text().split()  # never committed


def test_every_long_running_service_has_a_health_check(compose):
    services = compose["services"]
    for name in ("redis", "postgres", "api", "worker", "beat"):
        check = services[name].get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "$$HOSTNAME" in " ".join(services["worker"]["healthcheck"]["test"])
    assert services["beat"]["healthcheck"]["test"][1:3] == ["aer", "beat-health"]
    assert "/api/v1/healthz" in " ".join(services["api"]["healthcheck"]["test"])


def test_folder_jobs_and_the_optional_store(compose):
    for name in ("api", "worker"):
        assert compose["services"][name]["environment"]["AER_ALLOWED_ROOTS"] == "/audio"
    assert re.search(r"^\s*# - \S+:/audio:ro$", COMPOSE.read_text(), re.M)  # to uncomment
    assert compose["services"]["minio"]["profiles"] == ["minio"]
    assert "minio" not in str(compose["services"]["api"])  # optional: nothing depends on it


def test_object_storage_is_wired_and_the_demo_store_optional(compose):
    """Every AER container takes the storage settings from .env (blank: the data volume);
    MinIO and the job that creates its bucket run only under the ``minio`` profile."""
    services = compose["services"]
    for name in ("migrate", "api", "worker", "beat"):
        env = services[name]["environment"]
        assert env["AER_STORAGE_URL"] == "${AER_STORAGE_URL:-}", name
        for var in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[var] == f"${{{var}:-}}", (name, var)
    bucket = services["minio-bucket"]
    assert bucket["profiles"] == ["minio"] and bucket["restart"] == "no"
    assert bucket["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert bucket["image"] == services["minio"]["image"]  # its mc client, no other image
    assert "mc mb --ignore-existing" in " ".join(bucket["command"])
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^AER_STORAGE_URL=$", example, re.M)  # blank by default: the volume
    assert "AER_STORAGE_URL=s3://aer/data" in example  # the demo's value, documented
    assert re.search(r"^MINIO_BUCKET=aer$", example, re.M)


def test_workers_on_other_machines_share_no_disk(compose, worker_compose):
    """docker-compose.worker.yml runs only workers, like the main file's, that need the main
    machine's database, broker and bucket (compose refuses to start without them) and keep
    only a private scratch volume; docker-compose.share.yml publishes those three on the
    private address only."""
    (name,) = worker_compose["services"]
    worker, main = worker_compose["services"][name], compose["services"]["worker"]
    assert worker["command"] == main["command"]
    assert worker["healthcheck"]["test"] == main["healthcheck"]["test"]
    env = worker["environment"]
    for var in ("AER_DATABASE_URL", "AER_BROKER_URL", "AER_STORAGE_URL"):
        assert env[var].startswith(f"${{{var}:?"), var  # required, no default
    assert env["AER_DATA_DIR"] == "/data" and worker["volumes"] == ["scratch:/data"]
    assert "ports" not in worker and "depends_on" not in worker
    share = yaml.safe_load(SHARE_COMPOSE.read_text())["services"]
    assert set(share) == {"postgres", "redis", "minio"}
    for service in share.values():
        (port,) = service["ports"]
        assert port.startswith("${PRIVATE_ADDRESS:?")  # never 0.0.0.0 by default


def test_dockerfile_checks_health_and_pins_dependencies():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/api/v1/healthz", dockerfile, re.M)
    assert "pip install -c constraints.txt ." in dockerfile
    assert "constraints.txt" in re.search(r"^COPY .*pyproject.toml.*$", dockerfile, re.M)[0]
    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert canonicalize_name(Requirement(requirement).name) in pinned, requirement
    assert not {"pytest", "ruff", "pip", "setuptools"} & pinned


def test_beat_health_reads_the_schedule_file(tmp_path, monkeypatch):
    from api.cli import cli

    monkeypatch.setenv("AER_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli, ["beat-health"]).exit_code == 1  # no schedule file yet
    schedule = tmp_path / "celerybeat-schedule.db"
    schedule.write_bytes(b"")
    result = runner.invoke(cli, ["beat-health", "--max-age", "600"])
    assert result.exit_code == 0, result.output
    old = time.time() - 3600
    os.utime(schedule, (old, old))
    result = runner.invoke(cli, ["beat-health", "--max-age", "600"])
    assert result.exit_code == 1 and "old" in result.output
