"""deploy/ says what the daemon really does: the alert rules pass promtool's checks and their
unit tests, the systemd unit passes `systemd-analyze verify`, and the Dockerfile, the compose
file and the Kubernetes manifests parse and name the ports, paths, probes and arguments ackd
really uses (its own argument parser reads their command lines, its own config loader reads
the ConfigMap, its own web app lists the routes they probe). No Docker engine is needed."""

from __future__ import annotations

import argparse
import configparser
import json
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.app.daemon import Daemon, build_web_app
from receiver.cli.main import _parser
from receiver.config import build as config_module
from receiver.config.build.server import parse_listen
from receiver.notify.notifier import channel_kind, validate_url
from receiver.telemetry.metrics import Metrics
from tests.harness import ROOT, write_config
from tests.systemtools import binary
from tests.test_prometheus import metric_names

DEPLOY = ROOT / "deploy"


def run(*argv: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The paths ackd's web app serves, from the app itself."""
    home = tmp_path_factory.mktemp("routes")
    loaded = config_module.load(write_config(home / "ackd.yaml", "127.0.0.1:9"))
    daemon = Daemon(replace(loaded, data_dir=home / "data"))
    app = build_web_app(daemon.services)
    return {r.canonical for r in app.router.resources()}


def serve_args(argv: list[str]) -> argparse.Namespace:
    """A command line as `ackd` reads it; it must be `serve` with a config and a data dir."""
    args = _parser().parse_args(argv)
    assert args.command == "serve"
    assert args.data_dir, f"{argv} leaves the store in the working directory"
    return args


def port_of(args: argparse.Namespace, default: int = 9095) -> int:
    return parse_listen(args.listen)[1] if args.listen else default


# -- Prometheus rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(("rules", "count"), [("ackd-rules.yml", 11), ("watchdog-rules.yml", 1)])
def test_the_rules_pass_promtool_check(rules: str, count: int) -> None:
    done = run(binary("promtool", "prometheus"), "check", "rules", f"prometheus/{rules}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {count} rules found" in done.stdout


@pytest.mark.parametrize("tests", ["ackd-rules.test.yml", "watchdog-rules.test.yml"])
def test_the_rules_pass_their_unit_tests(tests: str) -> None:
    done = run(binary("promtool", "prometheus"), "test", "rules",
               tests, cwd=DEPLOY / "prometheus")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_fails_a_broken_rule_test(tmp_path: Path) -> None:
    """The unit tests can fail: the same file expecting a different summary is refused."""
    text = (DEPLOY / "prometheus/ackd-rules.test.yml").read_text()
    (tmp_path / "ackd-rules.yml").write_text((DEPLOY / "prometheus/ackd-rules.yml").read_text())
    (tmp_path / "t.yml").write_text(text.replace("ackd fails 75%", "ackd fails 70%"))
    done = run(binary("promtool", "prometheus"), "test", "rules", "t.yml", cwd=tmp_path)
    assert done.returncode != 0


def test_the_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """Checked with the rules file where the compose file mounts it."""
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    compose = _compose()
    mounts = _binds(compose["services"]["prometheus"])
    rules = ("ackd-rules.yml", "watchdog-rules.yml")
    for name in rules:
        assert mounts[f"/etc/prometheus/{name}"] == DEPLOY / "prometheus" / name
    assert prometheus["rule_files"] == [f"/etc/prometheus/{name}" for name in rules]
    prometheus["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in rules]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    done = run(binary("promtool", "prometheus"), "check", "config",
               str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", ["alertmanager.yml", "compose/alertmanager.yml"])
def test_the_alertmanager_configs_pass_amtool(path: str) -> None:
    done = run(binary("amtool", "prometheus-alertmanager"), "check-config", path)
    assert done.returncode == 0, done.stdout + done.stderr


# -- systemd -------------------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd/ackd.service")
    return unit


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify checks that ExecStart's binary exists: the copy points at the ackd installed here,
    everything else as shipped. A warning (an unknown key, a bad value) fails it too."""
    ackd = Path(sys.executable).parent / "ackd"
    assert ackd.exists()
    text = (DEPLOY / "systemd/ackd.service").read_text()
    assert "ExecStart=/opt/ackd/bin/ackd " in text
    (tmp_path / "ackd.service").write_text(text.replace("/opt/ackd/bin/ackd", str(ackd)))
    done = run(binary("systemd-analyze", "systemd"), "verify", str(tmp_path / "ackd.service"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_systemd_analyze_verify_reports_a_bad_value(tmp_path: Path) -> None:
    ackd = Path(sys.executable).parent / "ackd"
    text = (DEPLOY / "systemd/ackd.service").read_text().replace("/opt/ackd/bin/ackd", str(ackd))
    (tmp_path / "ackd.service").write_text(text.replace("NoNewPrivileges=yes",
                                                        "NoNewPrivileges=maybe"))
    done = run(binary("systemd-analyze", "systemd"), "verify", str(tmp_path / "ackd.service"))
    assert "NoNewPrivileges" in done.stderr or "boolean" in done.stderr


def test_the_systemd_unit_is_hardened_and_runs_what_ackd_takes() -> None:
    service = _unit()["Service"]
    args = serve_args(shlex.split(service["ExecStart"])[1:])
    assert args.data_dir == f"/var/lib/{service['StateDirectory']}"
    assert args.config.startswith(f"/etc/{service['ConfigurationDirectory']}/")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # ackd sends READY=1 (tests/test_sdnotify.py); notify-reload needs systemd 253.
    assert service["Type"] == "notify"
    # and WATCHDOG=1 every half of WatchdogSec (tests/test_sdnotify.py); hung, it restarts.
    assert service["WatchdogSec"] == "30s"
    assert service["Restart"] == "on-failure"
    hardened = {"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": ""}
    for key, value in hardened.items():
        assert service[key] == value, key


# -- Docker --------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
             "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        assert instruction in known, f"not a Dockerfile instruction: {line}"
        found.append((instruction, rest.strip()))
    return found


def _one(instructions: list[tuple[str, str]], name: str) -> str:
    [value] = [rest for instruction, rest in instructions if instruction == name]
    return value


def test_the_dockerfile_runs_ackd_as_it_is_built(routes: set[str]) -> None:
    d = dockerfile()
    assert d[0][0] == "FROM"
    assert "slim" in d[0][1]
    user = _one(d, "USER")
    assert user.split(":")[0] not in ("root", "0")
    entry, cmd = json.loads(_one(d, "ENTRYPOINT")), json.loads(_one(d, "CMD"))
    assert entry == ["ackd"]
    args = serve_args(cmd)
    port = port_of(args)
    assert json.loads(_one(d, "VOLUME")) == [args.data_dir]
    assert _one(d, "EXPOSE") == str(port)
    health = _one(d, "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/-/healthy" in health
    assert "/-/healthy" in routes
    copies = [rest.split() for instruction, rest in d if instruction == "COPY"]
    for *sources, _ in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
    assert ["config.example.yaml", args.config] in copies
    assert args.log_format == "json"


def test_the_dockerfile_user_is_the_kubernetes_user() -> None:
    run_lines = " ".join(rest for instruction, rest in dockerfile() if instruction == "RUN")
    uid = re.search(r"--uid (\d+)", run_lines)
    assert uid is not None
    pod = _kubernetes()["StatefulSet"]["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == int(uid.group(1))


# -- compose -------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _binds(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to deploy/)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (DEPLOY / source).resolve()
    return found


def test_compose_wires_ackd_prometheus_alertmanager_and_grafana(routes: set[str]) -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"ackd", "prometheus", "alertmanager", "grafana"}
    for service in services.values():
        for host_path in _binds(service).values():
            assert host_path.exists(), host_path
    ackd = services["ackd"]
    args = serve_args(ackd["command"])
    port = port_of(args)
    assert f"127.0.0.1:{port}:{port}" in ackd["ports"]
    assert f"ackd-data:{args.data_dir}" in ackd["volumes"]
    assert _binds(ackd)[args.config] == ROOT / "config.example.yaml"
    assert f"http://127.0.0.1:{port}/-/ready" in " ".join(ackd["healthcheck"]["test"])
    assert {"/-/ready", "/api/v1/alerts", "/metrics"} <= routes
    assert set(ackd["environment"]) == {"ACKD_WEBHOOK_TOKEN", "ACKD_API_TOKEN"}

    am_config = yaml.safe_load((DEPLOY / "compose/alertmanager.yml").read_text())
    hook = am_config["receivers"][0]["webhook_configs"][0]
    assert hook["url"] == f"http://ackd:{port}/api/v1/alerts"
    secret = hook["http_config"]["authorization"]["credentials_file"]
    assert secret == f"/run/secrets/{services['alertmanager']['secrets'][0]}"
    assert compose["secrets"]["ackd_webhook_token"]["environment"] == "ACKD_WEBHOOK_TOKEN"

    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "ackd"]
    assert job["static_configs"][0]["targets"] == [f"ackd:{port}"]
    assert job.get("metrics_path", "/metrics") in routes
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == \
        ["alertmanager:9093"]


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    grafana = _binds(_compose()["services"]["grafana"])
    provisioning = grafana["/etc/grafana/provisioning/dashboards"]
    provider = yaml.safe_load((provisioning / "ackd.yml").read_text())["providers"][0]
    assert grafana[provider["options"]["path"]] == DEPLOY / "grafana/dashboards"
    datasources = grafana["/etc/grafana/provisioning/datasources"]
    [source] = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana/dashboards/ackd.json").read_text())
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"


# -- Kubernetes ----------------------------------------------------------------------------------


def _kubernetes() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes/ackd.yaml").read_text()))
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs)
    return by_kind


def test_the_kubernetes_manifests_run_ackd_as_it_is_built(
    routes: set[str], tmp_path: Path
) -> None:
    k = _kubernetes()
    assert set(k) == {"Secret", "ConfigMap", "Service", "StatefulSet", "ServiceMonitor"}
    sts = k["StatefulSet"]["spec"]
    assert sts["replicas"] == 1  # one store, one writer
    pod = sts["template"]["spec"]
    [container] = pod["containers"]
    args = serve_args(container["args"])
    port = port_of(args)
    [http] = container["ports"]
    assert http["containerPort"] == port
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready"),
                        ("startupProbe", "/-/healthy")):
        assert container[probe]["httpGet"] == {"path": path, "port": http["name"]}
        assert path in routes
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[args.data_dir] == sts["volumeClaimTemplates"][0]["metadata"]["name"]
    config_dir, _, key = args.config.rpartition("/")
    [config_volume] = [v for v in pod["volumes"] if v["name"] == mounts[config_dir]]
    assert config_volume["configMap"]["name"] == k["ConfigMap"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert sts["template"]["metadata"]["labels"] == sts["selector"]["matchLabels"]

    # The ConfigMap is a configuration ackd loads, with the Secret's variables set.
    secret = k["Secret"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    (tmp_path / key).write_text(k["ConfigMap"]["data"][key])
    loaded = config_module.load(tmp_path / key, environ=secret["stringData"])
    assert loaded.webhook_auth.bearer_token == secret["stringData"]["ACKD_WEBHOOK_TOKEN"]
    with pytest.raises(config_module.ConfigError, match="ACKD_WEBHOOK_TOKEN"):
        config_module.load(tmp_path / key, environ={})

    service = k["Service"]["spec"]
    [service_port] = service["ports"]
    assert service_port["targetPort"] == http["name"]
    assert service["selector"] == sts["selector"]["matchLabels"]
    monitor = k["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= k["Service"]["metadata"]["labels"].items()
    [endpoint] = monitor["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics"
    assert "/metrics" in routes


def test_the_kubernetes_replicas_share_postgresql_and_a_link_secret(
    routes: set[str], tmp_path: Path
) -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes/ackd-replicas.yaml").read_text()))
    k = {doc["kind"]: doc for doc in docs}
    assert set(k) == {"Secret", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget",
                      "ServiceMonitor"}
    deployment = k["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert k["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["replicas"]
    pod = deployment["template"]["spec"]
    # Spread over nodes: one node's failure must not take every replica with it.
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == \
        deployment["selector"]["matchLabels"]
    [container] = pod["containers"]
    args = serve_args(container["args"])
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        assert container[probe]["httpGet"]["path"] == path
        assert path in routes
    secret = k["Secret"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    config_dir, _, key = args.config.rpartition("/")
    (tmp_path / key).write_text(k["ConfigMap"]["data"][key])
    loaded = config_module.load(tmp_path / key, environ=secret["stringData"])
    assert loaded.store_kind == "postgres"
    assert loaded.postgres is not None
    assert loaded.postgres.dsn == secret["stringData"]["ACKD_PG_DSN"]
    assert loaded.link_secret == secret["stringData"]["ACKD_LINK_SECRET"].encode()
    assert k["Service"]["spec"]["selector"] == deployment["selector"]["matchLabels"]


# -- the README's channel URLs -------------------------------------------------------------------


def _channel_urls() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Wiring real channels", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "://" in line]
    return [url for row in rows for url in re.findall(r"`([a-z]+://[^`]+)`", row)]


def test_the_readme_shows_every_channel() -> None:
    urls = _channel_urls()
    schemes = {url.split("://")[0] for url in urls}
    assert {"slack", "workflow", "tgram", "mailtos", "ntfys", "https"} <= schemes


@pytest.mark.parametrize("url", _channel_urls())
def test_every_channel_url_in_the_readme_is_one_apprise_takes(url: str) -> None:
    assert validate_url(url) is None


@pytest.mark.parametrize(("url", "kind"), [
    ("https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack"),
    ("https://prod-01.westeurope.logic.azure.com:443/workflows/abc123/triggers/manual/paths/"
     "invoke?api-version=2016-06-01&sig=sig", "workflow"),
    ("json://127.0.0.1:9/ana", "json"),
    ("mailtos://a:b@example.com", "mailtos"),
    ("not a url", "unknown"),
])
def test_the_channel_kind_is_the_services_scheme_never_https(url: str, kind: str) -> None:
    assert channel_kind(url) == kind


# Prometheus' own series a rule may read beside ackd's: whether the scrape succeeded.
PROMETHEUS_SERIES = {"up"}
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported() -> set[str]:
    """Every sample name ackd's /metrics can carry, from its collectors' families (those
    with no sample yet too: a labelled family before its first child, the clock offset on
    SQLite)."""
    metrics = Metrics()
    families = [*metrics.registry.collect(), *metrics.clock_offset.describe()]
    return {f"{family.name}{suffix}" for family in families for suffix in SUFFIXES[family.type]}


def rule_expressions(path: Path) -> list[tuple[str, str]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"])
            for group in groups for rule in group["rules"]]


@pytest.mark.parametrize("rules", ["ackd-rules.yml", "watchdog-rules.yml"])
def test_every_metric_a_rule_reads_is_one_ackd_exports(rules: str) -> None:
    """promtool's unit tests feed the series they name, so a rule reading a metric ackd
    never had (or no longer has) passes them: checked here against the collectors."""
    known = exported() | PROMETHEUS_SERIES
    for alert, expr in rule_expressions(DEPLOY / "prometheus" / rules):
        unknown = metric_names(expr) - known
        assert not unknown, f"{rules}: {alert} reads metrics ackd does not export: {unknown}"


def test_the_exported_names_are_the_samples_names() -> None:
    names = exported()
    assert {"ackd_notifications_total", "ackd_webhook_duration_seconds_bucket",
            "ackd_open_incidents", "ackd_clock_offset_seconds"} <= names
    assert "ackd_notifications" not in names  # a counter's samples end in _total
    assert metric_names("rate(ackd_notification_total[5m]) > 0") - names == {
        "ackd_notification_total"}


def test_the_readme_names_every_alert_rule_and_only_those() -> None:
    rules = {alert for alert, _ in rule_expressions(DEPLOY / "prometheus/ackd-rules.yml")}
    section = (ROOT / "README.md").read_text().split("**Alert rules**", 1)[1].split("\n## ")[0]
    named = set(re.findall(r"`(Ackd\w+)`", section))
    assert len(rules) > 10
    assert named == rules, (sorted(rules - named), sorted(named - rules))


def test_the_prometheus_rule_resource_holds_the_tested_rules() -> None:
    resource = yaml.safe_load((DEPLOY / "kubernetes/ackd-rules.yaml").read_text())
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == yaml.safe_load((DEPLOY / "prometheus/ackd-rules.yml").read_text())


# -- the README's metrics table ------------------------------------------------------------------


def _metric_rows() -> list[tuple[str, set[str]]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Monitoring ackd", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines()
            if line.startswith("| `ackd_")]
    return [(name.removesuffix("_total"), {label.strip() for label in labels.split(",")} - {""})
            for names, labels in rows for name in re.findall(r"`(ackd_\w+)`", names)]


def test_the_readme_gives_each_metric_its_labels() -> None:
    registered = {
        family._name: set(family._labelnames)  # noqa: SLF001  # what each metric is built with
        for family in vars(Metrics()).values() if hasattr(family, "_labelnames")
    }
    # A collector of its own (ClockOffset, absent until measured) names its unlabelled
    # families in describe().
    registered |= {metric.name: set() for metric in Metrics().clock_offset.describe()}
    rows = _metric_rows()
    assert len(rows) > 20
    for name, labels in rows:
        assert name in registered, name
        assert labels == registered[name], (name, labels, registered[name])
    missing = sorted(set(registered) - {name for name, _ in rows})
    assert not missing, f"README's metrics table lacks: {missing}"
