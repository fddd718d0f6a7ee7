"""The container image, compose file and Kubernetes manifests, parsed and checked.

No Docker engine or cluster is available where this project is developed, so these files are
never run here; instead every file is parsed and its essentials checked against the code: the
images are pinned, every `hwledger` command line parses with the real CLI parser, env names
exist in `deploy/config.py`, probes hit the service routes on the configured ports, secrets
only arrive through secretKeyRef or required compose variables (no default passwords), the
query service gets only its read-only role's URL, and compose publishes on loopback only.
The configuration table of docs/operations.md must list exactly `ENV_VARS`.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from hwledger.deploy.cli import build_parser
from hwledger.deploy.config import ENV_VARS, KAFKA_OPT_PREFIX, SECRET_WORDS, Settings
from hwledger.query.api import create_app
from hwledger.query.service import QueryService
from hwledger.schemas.roles import QUERY_ROLE, query_role

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
ROUTES = {"/healthz", "/readyz", "/metrics"}  # DESIGN section 6 + the projector's metrics port
IMAGE = "hwledger"
PROJECT_VERSION = version("hwledger")
CONTAINER_SPEC = dict[str, Any]


def load_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text("utf-8"))
    return loaded


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc)
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc["kind"] == kind]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    [found] = [doc for doc in k8s_kind(kind) if doc["metadata"]["name"] == name]
    return found


def pod_specs() -> Iterator[dict[str, Any]]:
    for doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def k8s_containers() -> list[CONTAINER_SPEC]:
    return [container for spec in pod_specs() for container in spec["containers"]]


def interpolated(env: dict[str, str]) -> dict[str, str]:
    """`env` as compose hands it to the container: a required `${VAR:?message}` set to a value
    (here an example password)."""
    return {k: re.sub(r"\$\{\w+:\?[^}]*\}", "example-password", v) for k, v in env.items()}


def hwledger_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in load_compose()["services"].items()
            if svc["image"].split(":")[0] == IMAGE}


def config_map() -> dict[str, str]:
    data: dict[str, str] = k8s_object("ConfigMap", "hwledger-config")["data"]
    return data


def is_hwledger_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0] == IMAGE


def invocations(entrypoint: list[str] | None, command: list[str]) -> list[list[str]]:
    """The `hwledger` argument lists a container runs (image entrypoint is `hwledger`)."""
    if entrypoint is None:
        return [command]
    assert entrypoint == ["sh", "-c"], f"unexpected entrypoint {entrypoint}"
    [script] = command
    runs = []
    for part in script.split("&&"):
        program, *argv = shlex.split(part)
        assert program == "hwledger", f"{part!r} does not run hwledger"
        runs.append(argv)
    return runs


def command_names(runs: list[list[str]]) -> set[str]:
    return {" ".join(arg for arg in argv if not arg.startswith("-")) for argv in runs}


def assert_real_command(argv: list[str]) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`hwledger {' '.join(argv)}` is not a hwledger command line "
                    f"(argparse exit {exc.code}, its message is in the captured stderr)")
    assert callable(args.handler)


def assert_env_name(name: str) -> None:
    assert name in ENV_VARS or name.startswith(KAFKA_OPT_PREFIX), (
        f"{name} is not a setting of deploy/config.py (ENV_VARS)")


def is_secret_name(name: str) -> bool:
    return name.endswith("DATABASE_URL") or any(word in name.lower() for word in SECRET_WORDS)


def url_path_and_port(text: str) -> tuple[str, int]:
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", text)
    assert match, f"no local URL in {text!r}"
    return match[2], int(match[1])


def container_port(container: CONTAINER_SPEC, port: str | int) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def query_routes() -> set[str]:
    """The routes of the real query app, from its OpenAPI document (the engine is never
    connected)."""
    engine = create_engine("postgresql+psycopg://hwledger@127.0.0.1:1/hwledger")
    with TestClient(create_app(QueryService(engine))) as client:
        return set(client.get("/openapi.json").json()["paths"])


def test_the_probed_routes_exist_in_the_query_app() -> None:
    assert query_routes() >= ROUTES


def test_every_file_parses() -> None:
    assert (DEPLOY / "Dockerfile").read_text("utf-8").count("FROM ") >= 2
    assert set(load_compose()["services"]) == {"kafka", "postgres", "topic", "migrate",
                                               "projector", "query"}
    kinds = sorted(doc["kind"] for doc in k8s_documents())
    assert kinds == ["ConfigMap", "CronJob", "Deployment", "Deployment", "Job", "Kustomization",
                     "Namespace", "PodDisruptionBudget", "PodDisruptionBudget", "Service"]
    assert all(doc.get("apiVersion") for doc in k8s_documents())


def test_kustomization_applies_every_manifest() -> None:
    [kustomization] = k8s_kind("Kustomization")
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert kustomization["images"] == [{"name": IMAGE, "newTag": PROJECT_VERSION}]


def test_dockerfile_is_multi_stage_non_root_with_the_hwledger_entry_point() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text("utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(stages) >= 2 and lines[stages[0]].endswith(" AS builder")
    builder, runtime = lines[stages[0]:stages[-1]], lines[stages[-1]:]
    assert any("python -m build --wheel" in line for line in builder)
    assert any(line.startswith("COPY --from=builder") for line in runtime)
    [user] = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert user.split(":")[0] not in ("0", "root")
    assert user.split(":")[0] in " ".join(runtime)  # the user is created in the runtime stage
    assert runtime[-2:] == ['ENTRYPOINT ["hwledger"]', 'CMD ["--help"]']
    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    folders = {folder.split("/")[0]
               for folder in packaged["tool"]["setuptools"]["package-dir"].values()}
    copied = {line.split()[1] for line in builder if line.startswith("COPY ")}
    assert folders <= copied, f"the image would miss {folders - copied}"


def test_images_are_pinned() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text("utf-8")
    images = re.findall(r"^FROM (\S+)", dockerfile, flags=re.M)
    images += [svc["image"] for svc in load_compose()["services"].values()]
    images += [container["image"] for container in k8s_containers()]
    for image in images:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{image} is not pinned"
        if is_hwledger_image(name):
            assert tag == PROJECT_VERSION, f"{image} is not this version ({PROJECT_VERSION})"


def test_compose_commands_are_real_hwledger_command_lines() -> None:
    runs = [argv for svc in hwledger_services().values()
            for argv in invocations(svc.get("entrypoint"), svc["command"])]
    for argv in runs:
        assert_real_command(argv)
    assert command_names(runs) == {"db migrate", "db seed", "project", "serve"}


def test_k8s_commands_are_real_hwledger_command_lines() -> None:
    runs = [argv for container in k8s_containers()
            for argv in invocations(container.get("command"), container["args"])]
    assert all(is_hwledger_image(container["image"]) for container in k8s_containers())
    for argv in runs:
        assert_real_command(argv)
    assert command_names(runs) == {"db migrate", "db seed", "db prune", "project", "serve"}


def test_env_names_are_settings_of_the_config_module() -> None:
    names = [name for svc in hwledger_services().values() for name in svc["environment"]]
    names += list(config_map())
    names += [env["name"] for container in k8s_containers() for env in container.get("env", [])]
    for name in names:
        assert_env_name(name)
    Settings.from_env(config_map())  # the ConfigMap's values parse


def test_compose_runs_kafka_kraft_postgres_two_projectors_and_the_query_service() -> None:
    services = load_compose()["services"]
    kafka = services["kafka"]["environment"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kafka["KAFKA_LOG_RETENTION_MS"] == "-1"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["projector"]["deploy"]["replicas"] == 2
    env = services["projector"]["environment"]
    assert env["HWLEDGER_KAFKA_BOOTSTRAP"] == kafka["KAFKA_ADVERTISED_LISTENERS"].split("//")[1]
    topic = services["topic"]["command"]
    settings = Settings.from_env(interpolated(env))
    assert topic[topic.index("--topic") + 1] == settings.topic
    assert int(topic[topic.index("--partitions") + 1]) == settings.partitions
    assert topic[topic.index("--config") + 1] == "retention.ms=-1"


def test_compose_health_checks_probe_real_routes_on_the_configured_ports() -> None:
    services = load_compose()["services"]
    long_running = {name for name, svc in services.items() if svc.get("restart") != "no"}
    assert long_running == {"kafka", "postgres", "projector", "query"}
    for name in long_running:
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    for name, setting in (("projector", "HWLEDGER_METRICS_PORT"),
                          ("query", "HWLEDGER_HTTP_PORT")):
        path, port = url_path_and_port(" ".join(services[name]["healthcheck"]["test"]))
        assert path in ROUTES and port == int(services[name]["environment"][setting])
    one_shots = set(services) - long_running
    waits = {dep: cond["condition"] for svc in services.values()
             for dep, cond in svc.get("depends_on", {}).items()}
    assert all(waits[name] == "service_completed_successfully" for name in one_shots)
    assert all(waits[name] == "service_healthy" for name in long_running & set(waits))


def test_k8s_probes_hit_real_routes_on_the_configured_ports() -> None:
    ports = {"projector": int(config_map()["HWLEDGER_METRICS_PORT"]),
             "query": int(config_map()["HWLEDGER_HTTP_PORT"])}
    expected = {"query": {"readinessProbe": "/readyz", "livenessProbe": "/healthz"},
                "projector": {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}}
    for container in k8s_containers():
        probes = {key: container[key] for key in ("readinessProbe", "livenessProbe")
                  if key in container}
        assert {key: probe["httpGet"]["path"] for key, probe in probes.items()} == \
            expected.get(container["name"], {})
        for probe in probes.values():
            assert probe["httpGet"]["path"] in ROUTES
            assert container_port(container, probe["httpGet"]["port"]) == \
                ports[container["name"]]


def test_k8s_secrets_only_through_secret_key_refs() -> None:
    assert not k8s_kind("Secret"), "secret values must not live in the repository"
    assert not [name for name in config_map() if is_secret_name(name)]
    refs = set()
    for container in k8s_containers():
        assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [
            "hwledger-config"]
        for env in container.get("env", []):
            if is_secret_name(env["name"]):
                assert "value" not in env, f"{env['name']} is inline"
                ref = env["valueFrom"]["secretKeyRef"]
                refs.add((env["name"], ref["name"], ref["key"]))
    assert refs == {
        ("HWLEDGER_DATABASE_URL", "hwledger-secrets", "database-url"),
        ("HWLEDGER_QUERY_DATABASE_URL", "hwledger-secrets", "query-database-url"),
        ("HWLEDGER_KAFKA_OPT_SASL_PASSWORD", "hwledger-secrets", "kafka-sasl-password"),
    }


def test_k8s_pods_are_non_root_with_requests_and_limits() -> None:
    for spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
    for container in k8s_containers():
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_k8s_projector_replicas_disruption_budget_and_query_service_match() -> None:
    projector = k8s_object("Deployment", "hwledger-projector")
    budget = k8s_object("PodDisruptionBudget", "hwledger-projector")
    labels = projector["spec"]["template"]["metadata"]["labels"]
    assert projector["spec"]["replicas"] >= 2
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < budget["spec"]["minAvailable"] < projector["spec"]["replicas"]
    query = k8s_object("Deployment", "hwledger-query")
    service = k8s_object("Service", "hwledger-query")
    assert service["spec"]["selector"].items() <= \
        query["spec"]["template"]["metadata"]["labels"].items()
    [container] = query["spec"]["template"]["spec"]["containers"]
    assert [container_port(container, p["targetPort"]) for p in service["spec"]["ports"]] == [
        int(config_map()["HWLEDGER_HTTP_PORT"])]


def test_operations_doc_documents_every_setting() -> None:
    documented = set(re.findall(r"^\| `(HWLEDGER_\w+)` \|",
                                (ROOT / "docs" / "operations.md").read_text("utf-8"), re.M))
    assert documented == set(ENV_VARS), "keep the table in docs/operations.md equal to ENV_VARS"


def test_compose_has_no_default_passwords() -> None:
    text = (DEPLOY / "compose.yaml").read_text("utf-8")
    variables = re.findall(r"\$\{(\w+)(:?[?-]?)", text)
    secret = [(name, how) for name, how in variables if "PASSWORD" in name]
    assert {name for name, _ in secret} == {"POSTGRES_PASSWORD", "HWLEDGER_QUERY_PASSWORD"}
    assert all(how == ":?" for _, how in secret), "a password variable must be required"
    for svc in hwledger_services().values():
        for name, value in svc["environment"].items():
            if name.endswith("DATABASE_URL"):
                assert re.fullmatch(r"postgresql://\w+:\$\{\w+:\?[^}]*\}@[^@]+", value), value


def test_the_query_service_gets_only_the_read_only_role() -> None:
    services = hwledger_services()
    query, migrate = services["query"]["environment"], services["migrate"]["environment"]
    assert "HWLEDGER_DATABASE_URL" not in query
    interpolated = re.sub(r"\$\{[^}]*\}", "pw", query["HWLEDGER_QUERY_DATABASE_URL"])
    assert query_role(interpolated) == (QUERY_ROLE, "pw")
    assert migrate["HWLEDGER_QUERY_DATABASE_URL"] == query["HWLEDGER_QUERY_DATABASE_URL"]
    assert "HWLEDGER_QUERY_DATABASE_URL" not in services["projector"]["environment"]
    env = {container["name"]: {e["name"] for e in container.get("env", [])}
           for container in k8s_containers()}
    assert env["query"] == {"HWLEDGER_QUERY_DATABASE_URL"}
    assert {"HWLEDGER_DATABASE_URL", "HWLEDGER_QUERY_DATABASE_URL"} <= env["migrate"]


def test_compose_publishes_ports_on_loopback_only() -> None:
    published = [port for svc in load_compose()["services"].values()
                 for port in svc.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published)
