"""The production collector configurations in collector/.

No otelcol-contrib binary and no Docker engine are available where these tests run, so the
configurations are checked structurally (every referenced component defined, memory_limiter first,
routing by trace ID, the sampling policies we promise, every component type present in a pinned
otelcol-contrib release, the Compose file's mounts), and the agent → backend hop is exercised end
to end with rotel (an OTLP collector on PyPI) forwarding to a real ``otel-corr serve``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .collector import AGENT, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR = ROOT / "collector"
CONFIGS = {name: COLLECTOR / f"{name}.yaml" for name in ("agent", "gateway", "sampler")}
JAEGER_CONFIG = COLLECTOR / "jaeger" / "config.yaml"
# The other way beyond one machine: collector -> otel-corr serve replicas -> ClickHouse (not in Compose).
REPLICAS = COLLECTOR / "otel-corr-replicas.yaml"
COMPOSE = COLLECTOR / "docker-compose.yaml"
DASHBOARD = COLLECTOR / "grafana" / "dashboard.json"
DATASOURCES = COLLECTOR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
KUSTOMIZATION = COLLECTOR / "kustomization.yaml"

# The otelcol-contrib release the configurations target (the image tag in docker-compose.yaml and
# collector/kubernetes/). Each component type below was checked against that release:
#  * its Go module is listed in distributions/otelcol-contrib/manifest.yaml of
#    open-telemetry/opentelemetry-collector-releases at tag v0.159.0;
#  * the core types (otlp, otlp_grpc, otlp_http, memory_limiter, batch, debug) were read from each
#    component's metadata.yaml in open-telemetry/opentelemetry-collector at tag v0.159.0;
#  * the contrib types renamed in 2026 were taken from the upstream renames: load_balancing
#    (contrib PR #48533), resource_detection (#48525), span_metrics (deprecation warning for
#    `spanmetrics` observed at v0.157.0); tail_sampling, prometheus and health_check kept their names.
# Anything outside this table fails the test: check the new component against the release first,
# then add it here.
PINNED_RELEASE = "0.159.0"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"
CONTRIB_COMPONENTS: dict[str, dict[str, str]] = {
    "receivers": {
        "otlp": "go.opentelemetry.io/collector/receiver/otlpreceiver",
    },
    "processors": {
        "memory_limiter": "go.opentelemetry.io/collector/processor/memorylimiterprocessor",
        "batch": "go.opentelemetry.io/collector/processor/batchprocessor",
        "resource_detection": f"{CONTRIB}/processor/resourcedetectionprocessor",
        "tail_sampling": f"{CONTRIB}/processor/tailsamplingprocessor",
    },
    "exporters": {
        "otlp_grpc": "go.opentelemetry.io/collector/exporter/otlpexporter",
        "otlp_http": "go.opentelemetry.io/collector/exporter/otlphttpexporter",
        "debug": "go.opentelemetry.io/collector/exporter/debugexporter",
        "load_balancing": f"{CONTRIB}/exporter/loadbalancingexporter",
        "prometheus": f"{CONTRIB}/exporter/prometheusexporter",
    },
    "connectors": {
        "span_metrics": f"{CONTRIB}/connector/spanmetricsconnector",
    },
    "extensions": {
        "health_check": f"{CONTRIB}/extension/healthcheckextension",
    },
}
# Old spellings that v0.159.0 still accepts with a deprecation warning: not in our files.
DEPRECATED_ALIASES = {
    ("exporters", "otlp"): "otlp_grpc",
    ("exporters", "otlphttp"): "otlp_http",
    ("exporters", "loadbalancing"): "load_balancing",
    ("processors", "resourcedetection"): "resource_detection",
    ("connectors", "spanmetrics"): "span_metrics",
}
# Jaeger v2 is its own collector distribution; these are in cmd/jaeger/internal/components.go at
# jaegertracing/jaeger v2.20.0 (the image tag in docker-compose.yaml).
JAEGER_COMPONENTS = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch"},
    "exporters": {"jaeger_storage_exporter"},
    "connectors": set(),
    "extensions": {"jaeger_storage", "jaeger_query", "healthcheckv2"},
}
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def ctype(component_id: str) -> str:
    """`otlp_grpc/jaeger` → `otlp_grpc`."""
    return component_id.split("/", 1)[0]


def section(config: dict[str, Any], name: str) -> dict[str, Any]:
    return config.get(name) or {}


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    result = config["service"]["pipelines"]
    assert result, "no pipelines"
    return result


ALL_COLLECTOR_CONFIGS = [*CONFIGS.values(), REPLICAS, JAEGER_CONFIG]
CONTRIB_CONFIGS = [*CONFIGS.values(), REPLICAS]


# --- every file parses -------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted(p for p in COLLECTOR.rglob("*") if p.suffix in (".yaml", ".yml"))


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(COLLECTOR)))
def test_yaml_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents)


def test_dashboard_is_json() -> None:
    assert json.loads(DASHBOARD.read_text())["uid"]


# --- pipelines are wired to defined components -------------------------------------------------


@pytest.mark.parametrize("path", ALL_COLLECTOR_CONFIGS, ids=lambda p: str(p.relative_to(COLLECTOR)))
def test_every_pipeline_component_is_defined(path: Path) -> None:
    config = load(path)
    receivers, processors = section(config, "receivers"), section(config, "processors")
    exporters, connectors = section(config, "exporters"), section(config, "connectors")
    used: dict[str, set[str]] = {s: set() for s in SECTIONS}
    connector_as_exporter: set[str] = set()
    connector_as_receiver: set[str] = set()
    for name, pipeline in pipelines(config).items():
        assert ctype(name) in ("traces", "metrics", "logs"), name
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for r in pipeline["receivers"]:
            assert r in receivers or r in connectors, f"{path.name}: pipeline {name}: receiver {r} undefined"
            if r in connectors:
                connector_as_receiver.add(r)
                used["connectors"].add(r)
            else:
                used["receivers"].add(r)
        for p in pipeline.get("processors") or []:
            assert p in processors, f"{path.name}: pipeline {name}: processor {p} undefined"
            used["processors"].add(p)
        for e in pipeline["exporters"]:
            assert e in exporters or e in connectors, f"{path.name}: pipeline {name}: exporter {e} undefined"
            if e in connectors:
                connector_as_exporter.add(e)
                used["connectors"].add(e)
            else:
                used["exporters"].add(e)
    # A connector must leave one pipeline and enter another, or the collector refuses to start.
    assert connector_as_exporter == connector_as_receiver == set(connectors), path.name
    for e in config["service"].get("extensions") or []:
        assert e in section(config, "extensions"), f"{path.name}: extension {e} undefined"
        used["extensions"].add(e)
    # Nothing defined and left unused (the collector ignores those silently: a typo would hide).
    for s in SECTIONS:
        assert set(section(config, s)) == used[s], f"{path.name}: {s} defined but unused"


@pytest.mark.parametrize("path", ALL_COLLECTOR_CONFIGS, ids=lambda p: str(p.relative_to(COLLECTOR)))
def test_memory_limiter_is_first_in_every_pipeline(path: Path) -> None:
    for name, pipeline in pipelines(load(path)).items():
        processors = pipeline.get("processors") or []
        assert processors and ctype(processors[0]) == "memory_limiter", f"{path.name}: {name}: {processors}"


# --- component types exist in the pinned release -----------------------------------------------


@pytest.mark.parametrize("path", CONTRIB_CONFIGS, ids=lambda p: p.stem)
def test_component_types_exist_in_pinned_contrib_release(path: Path) -> None:
    config, name = load(path), path.stem
    for s in SECTIONS:
        for component_id in section(config, s):
            kind = ctype(component_id)
            alias = DEPRECATED_ALIASES.get((s, kind))
            assert alias is None, f"{name}.yaml: {s}.{component_id}: deprecated alias, write {alias}"
            assert kind in CONTRIB_COMPONENTS[s], (
                f"{name}.yaml: {s}.{component_id}: `{kind}` is not in the otelcol-contrib "
                f"v{PINNED_RELEASE} table of this test; check it exists in that release, then add it"
            )


def test_jaeger_config_uses_jaeger_components() -> None:
    config = load(JAEGER_CONFIG)
    for s in SECTIONS:
        for component_id in section(config, s):
            assert ctype(component_id) in JAEGER_COMPONENTS[s], f"jaeger/config.yaml: {s}.{component_id}"


# --- what each tier promises -------------------------------------------------------------------


def _one_of_type(config: dict[str, Any], s: str, kind: str) -> tuple[str, dict[str, Any]]:
    found = [(k, v or {}) for k, v in section(config, s).items() if ctype(k) == kind]
    assert len(found) == 1, f"{s}: {kind}: {found}"
    return found[0]


def test_agent_receives_otlp_on_standard_ports_and_forwards_to_gateway() -> None:
    config = load(CONFIGS["agent"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    exporter_id, exporter = _one_of_type(config, "exporters", "otlp_grpc")
    assert "OTELCOL_GATEWAY_ENDPOINT" in exporter["endpoint"]
    _, detection = _one_of_type(config, "processors", "resource_detection")
    assert detection["override"] is False  # the app's own resource attributes win
    for name in ("traces", "logs"):
        pipeline = config["service"]["pipelines"][name]
        assert pipeline["exporters"] == [exporter_id]
        assert "resource_detection" in pipeline["processors"]


def test_gateway_load_balances_traces_and_logs_by_trace_id() -> None:
    config = load(CONFIGS["gateway"])
    exporter_id, lb = _one_of_type(config, "exporters", "load_balancing")
    assert lb["routing_key"] == "traceID"
    assert lb["protocol"]["otlp"]["tls"]["insecure"] is True
    dns = lb["resolver"]["dns"]
    assert "OTELCOL_SAMPLER_HOSTNAME" in dns["hostname"] and str(dns["port"]) == "4317"
    assert set(lb["resolver"]) == {"dns"}, "one resolver; the k8s one is a commented alternative"
    assert re.search(r"^\s*#\s*k8s:\s*$", CONFIGS["gateway"].read_text(), re.M), "k8s resolver example"
    for name in ("traces", "logs"):
        assert config["service"]["pipelines"][name]["exporters"] == [exporter_id]


def test_sampler_keeps_errors_slow_requested_ids_and_a_baseline() -> None:
    config = load(CONFIGS["sampler"])
    _, tail = _one_of_type(config, "processors", "tail_sampling")
    policies = {p["type"]: p for p in tail["policies"]}
    assert set(policies) == {"status_code", "latency", "string_attribute", "probabilistic"}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert "threshold_ms" in policies["latency"]["latency"]
    requested = policies["string_attribute"]["string_attribute"]
    assert requested["key"] == "request.id"  # otel_corr's span attribute (otel_corr._ids.REQUEST_ID_ATTRIBUTE)
    assert requested["values"] and all(isinstance(v, str) for v in requested["values"])
    assert "sampling_percentage" in policies["probabilistic"]["probabilistic"]
    assert len({p["name"] for p in tail["policies"]}) == len(tail["policies"])


def test_request_id_attribute_matches_the_library() -> None:
    from otel_corr._ids import REQUEST_ID_ATTRIBUTE

    config = load(CONFIGS["sampler"])
    _, tail = _one_of_type(config, "processors", "tail_sampling")
    keys = {p["string_attribute"]["key"] for p in tail["policies"] if p["type"] == "string_attribute"}
    assert keys == {REQUEST_ID_ATTRIBUTE}


def test_sampler_exports_sampled_traces_to_jaeger_logs_to_loki_and_unsampled_metrics() -> None:
    config = load(CONFIGS["sampler"])
    jaeger_id, jaeger = _one_of_type(config, "exporters", "otlp_grpc")
    loki_id, loki = _one_of_type(config, "exporters", "otlp_http")
    prom_id, _ = _one_of_type(config, "exporters", "prometheus")
    metrics_id, _ = _one_of_type(config, "connectors", "span_metrics")
    assert "JAEGER" in jaeger["endpoint"] and "LOKI" in loki["endpoint"] and loki["endpoint"].endswith("/otlp}")
    by_exporter = {e: (n, p) for n, p in pipelines(config).items() for e in p["exporters"]}
    traces_name, traces = by_exporter[jaeger_id]
    assert traces["processors"] == ["memory_limiter", "tail_sampling"]
    _, spans_to_metrics = by_exporter[metrics_id]
    assert "tail_sampling" not in spans_to_metrics["processors"], "metrics must count every span"
    assert spans_to_metrics["receivers"] == traces["receivers"]
    _, metrics = by_exporter[prom_id]
    assert metrics["receivers"] == [metrics_id]
    _, logs = by_exporter[loki_id]
    assert ctype(traces_name) == "traces" and not any("sampling" in p for p in logs["processors"])


def test_endpoints_come_from_environment_placeholders() -> None:
    placeholder = re.compile(r"^\$\{env:[A-Z0-9_]+(:-[^}]*)?\}")
    for path in CONTRIB_CONFIGS:
        name = path.stem
        for component_id, exporter in section(load(path), "exporters").items():
            if "endpoint" in (exporter or {}) and ctype(component_id) != "prometheus":
                assert placeholder.match(exporter["endpoint"]), f"{name}: {component_id}: {exporter['endpoint']}"
    lb = load(CONFIGS["gateway"])["exporters"]["load_balancing"]
    assert placeholder.match(lb["resolver"]["dns"]["hostname"])


def test_replicas_config_spreads_exports_over_every_replica_and_retries_refusals() -> None:
    """Collector -> otel-corr replicas: any replica takes any span (the cluster shards by trace ID), so the
    exporter balances over every replica's address rather than routing by trace ID; a replica's 503 /
    UNAVAILABLE (a shard down) is retried; no batch is larger than a replica takes."""
    from otel_corr.server._app import MAX_ITEMS

    config = load(REPLICAS)
    exporter_id, exporter = _one_of_type(config, "exporters", "otlp_grpc")
    assert set(section(config, "exporters")) == {exporter_id}, "no load_balancing: no routing by trace ID"
    # A name that resolves to one address per replica (a headless Service), resolved by gRPC itself.
    assert re.fullmatch(r"\$\{env:[A-Z0-9_]+:-dns:///[a-z0-9.-]+:4317\}", exporter["endpoint"]), exporter["endpoint"]
    assert exporter["balancer_name"] == "round_robin"
    assert exporter["retry_on_failure"]["enabled"] is True
    batch = exporter["sending_queue"]["batch"]
    assert batch["sizer"] == "items" and 0 < batch["min_size"] <= batch["max_size"] <= MAX_ITEMS // 2
    for name in ("traces", "logs"):
        assert config["service"]["pipelines"][name]["exporters"] == [exporter_id]


def test_span_metrics_names_match_the_dashboard_and_jaeger() -> None:
    config = load(CONFIGS["sampler"])
    _, connector = _one_of_type(config, "connectors", "span_metrics")
    _, prom = _one_of_type(config, "exporters", "prometheus")
    namespace = connector["namespace"].replace(".", "_")
    assert connector["histogram"]["unit"] == "ms"
    assert prom["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    calls, buckets = f"{namespace}_calls_total", f"{namespace}_duration_milliseconds_bucket"
    dashboard = DASHBOARD.read_text()
    assert calls in dashboard and buckets in dashboard
    spm = load(JAEGER_CONFIG)["extensions"]["jaeger_storage"]["metric_backends"]["spm_store"]["prometheus"]
    assert spm["metric_namespace"] == namespace and spm["latency_unit"] == "ms"
    assert spm["normalize_calls"] is True and spm["normalize_duration"] is True


# --- Docker Compose ----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return load(COMPOSE)["services"]


def _mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes") or []:
        host, container = volume.split(":")[:2]
        assert host.startswith("."), f"bind mounts only, relative to collector/: {volume}"
        mounts.append(((COLLECTOR / host).resolve(), container))
    return mounts


def _host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The file behind `container_path` through the service's bind mounts."""
    for host, container in sorted(_mounts(service), key=lambda m: -len(m[1])):
        if container_path == container:
            return host
        if container_path.startswith(container.rstrip("/") + "/"):
            return host / container_path[len(container.rstrip("/")) + 1 :]
    return None


def test_compose_mounts_only_files_that_exist() -> None:
    for name, service in _compose().items():
        for host, _ in _mounts(service):
            assert host.exists(), f"{name}: {host}"
            assert COLLECTOR in (host, *host.parents), f"{name}: mounts outside collector/: {host}"


def test_compose_collectors_run_our_configs() -> None:
    services = _compose()
    seen = set()
    for name, service in services.items():
        command = " ".join(service.get("command") or [])
        if "opentelemetry-collector-contrib" in service["image"]:
            match = re.fullmatch(r"--config=(\S+)", command)
            assert match, f"{name}: {command}"
        elif name == "jaeger":
            match = re.fullmatch(r"--config (\S+)", command)
            assert match, command
        else:
            continue
        host = _host_path(service, match.group(1))
        assert host is not None and host.is_file(), f"{name}: {match.group(1)} is not a mounted file"
        seen.add(host)
    assert set(CONFIGS.values()) | {JAEGER_CONFIG} == seen


def test_compose_images_are_pinned() -> None:
    for name, service in _compose().items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image}"
        if "opentelemetry-collector-contrib" in repo:
            assert tag == PINNED_RELEASE, f"{name}: {image} is not the release the component table was checked on"


def test_compose_wires_agent_gateway_samplers() -> None:
    services = _compose()
    assert services["otelcol-gateway"]["environment"]["OTELCOL_SAMPLER_HOSTNAME"] == "otelcol-sampler"
    assert services["otelcol-agent"]["environment"]["OTELCOL_GATEWAY_ENDPOINT"] == "otelcol-gateway:4317"
    assert services["otelcol-sampler"]["deploy"]["replicas"] >= 2
    assert services["otelcol-sampler"]["environment"]["LOKI_OTLP_ENDPOINT"].endswith("/otlp")


# --- Kubernetes --------------------------------------------------------------------------------


def test_kustomization_builds_configmaps_from_the_same_files() -> None:
    kustomization = load(KUSTOMIZATION)
    for resource in kustomization["resources"]:
        assert (COLLECTOR / resource).is_file(), resource
    generated = {}
    for generator in kustomization["configMapGenerator"]:
        (spec,) = generator["files"]
        key, _, source = spec.partition("=")
        assert key == "config.yaml" and (COLLECTOR / source).resolve() in CONFIGS.values()
        generated[generator["name"]] = source
    assert sorted(generated.values()) == sorted(f"{n}.yaml" for n in CONFIGS)
    workloads = [
        doc
        for resource in kustomization["resources"]
        for doc in yaml.safe_load_all((COLLECTOR / resource).read_text())
        if doc and doc["kind"] in ("Deployment", "DaemonSet")
    ]
    assert {w["metadata"]["name"]: w["kind"] for w in workloads} == {
        "otelcol-agent": "DaemonSet",
        "otelcol-gateway": "Deployment",
        "otelcol-sampler": "Deployment",
    }
    for w in workloads:
        (volume,) = w["spec"]["template"]["spec"]["volumes"]
        assert volume["configMap"]["name"] in generated
        (container,) = w["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(":" + PINNED_RELEASE)


def test_kubernetes_sampler_service_is_headless_for_the_dns_resolver() -> None:
    docs = list(yaml.safe_load_all((COLLECTOR / "kubernetes" / "sampler.yaml").read_text()))
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["clusterIP"] == "None"
    gateway_docs = yaml.safe_load_all((COLLECTOR / "kubernetes" / "gateway.yaml").read_text())
    gateway = next(d for d in gateway_docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTELCOL_SAMPLER_HOSTNAME"].startswith(service["metadata"]["name"] + ".")


# --- Grafana -----------------------------------------------------------------------------------


def test_grafana_dashboard_links_request_ids_to_loki_and_jaeger() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {d["uid"] for d in load(DATASOURCES)["datasources"]}
    assert uids == {"prometheus", "loki", "jaeger"}

    def walk(node: Any) -> Iterator[Any]:
        yield node
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        for child in children:
            yield from walk(child)

    for node in walk(dashboard):
        if isinstance(node, dict) and "uid" in node and "type" in node and node["type"] in ("prometheus", "loki"):
            assert node["uid"] in uids, node
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"service", "request_id", "jaeger_url"} <= variables
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for want in ("request rate", "p95 latency", "error rate", "top errors"):
        assert want in titles
    exprs = [n["expr"] for n in walk(dashboard) if isinstance(n, dict) and "expr" in n]
    assert any('request_id="$request_id"' in e for e in exprs), "Loki search by request_id"
    urls = [n["url"] for n in walk(dashboard) if isinstance(n, dict) and isinstance(n.get("url"), str)]
    assert any(u.endswith("/trace/${request_id}") for u in urls), "open Jaeger by trace ID"
    loki = next(d for d in load(DATASOURCES)["datasources"] if d["uid"] == "loki")
    assert loki["jsonData"]["derivedFields"][0]["matcherRegex"] == "trace_id"


# --- end to end: rotel as the agent, otel-corr serve as the backend ----------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.e2e
def test_rotel_agent_forwards_spans_and_logs_to_otel_corr_serve(tmp_path: Path) -> None:
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import set_span_in_context

    query, serve_http, serve_grpc = free_port(), free_port(), free_port()
    agent_grpc, agent_http = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(argv: list[str], log: str, **kw: Any) -> subprocess.Popen[bytes]:
        out = open(tmp_path / log, "w")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, **kw)
        procs.append((proc, out))
        return proc

    try:
        serve = start(
            [
                sys.executable,
                "-m",
                "otel_corr",
                "serve",
                "--port",
                str(query),
                "--otlp-http-port",
                str(serve_http),
                "--otlp-grpc-port",
                str(serve_grpc),
                "--db",
                str(tmp_path / "t.db"),
                "--retention",
                "0",
            ],
            "serve.log",
            env=env,
        )
        for port in (query, serve_http, serve_grpc):
            wait_for_port(port, serve)
        agent = start(
            [
                str(AGENT),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{agent_grpc}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{agent_http}",
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                f"http://127.0.0.1:{serve_http}",
                "--otlp-exporter-protocol",
                "http",
            ],
            "rotel.log",
            env={**env, "NO_COLOR": "1"},
        )
        wait_for_port(agent_http, agent)
        wait_for_port(agent_grpc, agent)

        request_id = "req-collector-e2e-7f3c"
        resource = Resource.create({"service.name": "collector-e2e"})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{agent_http}/v1/traces"))
        )
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"http://127.0.0.1:{agent_http}/v1/logs"))
        )
        tracer = tracer_provider.get_tracer("collector-e2e")
        with tracer.start_as_current_span("GET /orders/{id}", attributes={"request.id": request_id}) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            logger_provider.get_logger("collector-e2e").emit(
                LogRecord(
                    context=set_span_in_context(span),
                    severity_number=SeverityNumber.INFO,
                    severity_text="INFO",
                    body="looking up order 7",
                    attributes={"request.id": request_id},
                )
            )
        tracer_provider.shutdown()
        logger_provider.shutdown()

        # The request ID is not hex, so serve looks it up through the `request.id` span attribute.
        deadline = time.monotonic() + 20
        trace: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                data = _get_json(f"http://127.0.0.1:{query}/api/traces/{request_id}")["data"]
            except urllib.error.HTTPError as e:
                assert e.code == 404, e
                data = []
            if data and any(entry.get("fields") for s in data[0]["spans"] for entry in s.get("logs") or []):
                trace = data[0]
                break
            time.sleep(0.2)
        assert trace, (tmp_path / "rotel.log").read_text()[-2000:] + (tmp_path / "serve.log").read_text()[-2000:]
        assert trace["traceID"].rjust(32, "0") == trace_id
        (server_span,) = trace["spans"]
        assert server_span["operationName"] == "GET /orders/{id}"
        tags = {t["key"]: t["value"] for t in server_span["tags"]}
        assert tags["request.id"] == request_id
        assert trace["processes"][server_span["processID"]]["serviceName"] == "collector-e2e"
        messages = [f["value"] for entry in server_span["logs"] for f in entry["fields"] if f["key"] == "message"]
        assert "looking up order 7" in messages
    finally:
        for proc, out in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            out.close()


class _Agent:
    """A rotel agent on free ports forwarding OTLP/gRPC to ``target`` (a replica's gRPC port), retrying
    what it refuses every second at most, for up to two minutes."""

    def __init__(self, tmp: Path, name: str, target: int) -> None:
        self.http, self.grpc = free_port(), free_port()
        self.log = tmp / f"{name}.log"
        self._out = open(self.log, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        argv = [str(AGENT), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc}"]
        argv += ["--otlp-http-endpoint", f"127.0.0.1:{self.http}", "--exporter", "otlp"]
        # gzip, as collector/otel-corr-replicas.yaml sends it.
        argv += ["--otlp-exporter-endpoint", f"http://127.0.0.1:{target}", "--otlp-exporter-protocol", "grpc"]
        argv += ["--otlp-exporter-compression", "gzip"]
        argv += ["--otlp-exporter-retry-initial-backoff", "200ms", "--otlp-exporter-retry-max-backoff", "1s"]
        argv += ["--otlp-exporter-retry-max-elapsed-time", "120s", "--batch-timeout", "100ms"]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, env={**env, "NO_COLOR": "1"})
        wait_for_port(self.http, self.proc)
        wait_for_port(self.grpc, self.proc)

    def post(self, kind: str, body: bytes) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/v1/{kind}", data=body, headers={"content-type": "application/x-protobuf"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()


def _wait_whole(replica: Any, request_id: str, spans: int, timeout: float = 60) -> dict[str, Any]:
    """Poll until the trace of ``request_id`` has ``spans`` spans and a log line on ``replica``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        response = replica.get(f"/api/ui/trace/{request_id}")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            if len(body["spans"]) >= spans and body["logs"]:
                return body
        assert time.monotonic() < deadline, (replica.name, request_id, response.status_code, response.text[:300])
        time.sleep(0.2)


@pytest.mark.e2e
def test_rotel_agents_forward_to_otel_corr_replicas_on_a_clickhouse_cluster(tmp_path: Path) -> None:
    """collector/otel-corr-replicas.yaml's topology with real parts: two hosts' agents (rotel) each forward to
    their own ``otel-corr serve`` replica on one 2-shard ClickHouse cluster.  A request that crossed both hosts
    is one trace on either replica, found by its request ID.  With a shard stopped, the replicas refuse
    the batches it should hold, the agents retry them, and once it is back every trace is stored, once."""
    from ._stores import clickhouse_serve, crossing_trace
    from .clickhouse_cluster import MISSING, ClickHouseCluster, find_server

    if find_server() is None:
        pytest.skip(MISSING)
    with ClickHouseCluster(tmp_path / "clickhouse") as cluster:
        replicas: list[Any] = []
        agents: list[_Agent] = []
        try:
            for number in (1, 2):
                replicas.append(clickhouse_serve(tmp_path, f"replica-{number}", cluster.url_via(number)))
                agents.append(_Agent(tmp_path, f"agent-{number}", replicas[-1].grpc))

            def send(name: str) -> None:
                _, front, back, logs = crossing_trace(name)
                agents[0].post("traces", front)  # the front host's agent, to replica 1
                agents[1].post("traces", back)  # the back host's agent, to replica 2
                agents[1].post("logs", logs)

            send("crossing")
            for replica in replicas:
                trace = _wait_whole(replica, "req-crossing", 3)
                assert {s["service"] for s in trace["spans"]} == {"front", "back"}, replica.name
                assert [line["message"] for line in trace["logs"]] == ["prices for crossing read"]

            cluster.stop_shard(2)
            names = [f"outage-{i}" for i in range(6)]
            for name in names:
                send(name)
            # Refused while the shard is down (a trace on it cannot be stored): the agents say so and retry.
            deadline = time.monotonic() + 30
            while not any("Unavailable" in a.output() and "not stored" in a.output() for a in agents):
                assert time.monotonic() < deadline, agents[0].output()[-2000:] + agents[1].output()[-2000:]
                time.sleep(0.2)
            cluster.start_shard(2)
            for name in names:
                for replica in replicas:
                    trace = _wait_whole(replica, f"req-{name}", 3)
                    assert len(trace["spans"]) == 3 and len(trace["logs"]) == 1, (replica.name, trace)
        finally:
            for agent in agents:
                agent.stop()
            for replica in replicas:
                replica.stop()
