"""The OpenShift deployment files (deploy/openshift/), checked structurally.

No cluster and no Helm run here: these tests parse values.yaml (the official Airflow chart's
values) and xdmod-namespace.yaml with PyYAML and check them against the chart's key names, against
OpenShift's restricted-v2 SCC, and against the pods this package's own pod factory builds
(build_pod_request_obj(dry_run=True)) from the site config the values ship.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from xdmod_usage.config import SiteConfig, parse_site_config
from xdmod_usage.kubernetes_runner import pod_spec, xdmod_pod_operator
from xdmod_usage.xdmod_commands import XdmodInput, ingest, shred_slurm

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "openshift"

# Top-level keys of the official chart's values.schema.json, read from apache/airflow at commit
# 5f1ee0aea931bd3a221eab567f6ad724c587b43a (chart/values.schema.json: defaultAirflowTag 3.2.2,
# "Version 3.1.0 and above is supported"). Only keys whose own entry was read there are listed (the
# schema has a few more, e.g. flower, pgbouncer, redis, ports). The schema sets no
# additionalProperties at its top level, so Helm would silently ignore a misspelt or removed
# top-level key; this list is what catches it.
CHART_SCHEMA_COMMIT = "5f1ee0aea931bd3a221eab567f6ad724c587b43a"
CHART_TOP_LEVEL_KEYS = frozenset(
    {
        "fullnameOverride", "revisionHistoryLimit", "nameOverride", "useStandardNaming", "uid", "gid",
        "airflowHome", "defaultAirflowRepository", "defaultAirflowTag", "defaultAirflowDigest",
        "airflowVersion", "splitApiServersIntoCoreAndExecution", "securityContext", "securityContexts",
        "containerLifecycleHooks", "nodeSelector", "affinity", "tolerations", "topologySpreadConstraints",
        "schedulerName", "labels", "enableServiceLinks", "imagePullSecrets", "ingress", "networkPolicies",
        "airflowPodAnnotations", "airflowConfigAnnotations", "airflowLocalSettings", "rbac", "executor",
        "allowPodLaunching", "allowJobLaunching", "images", "env", "volumes", "volumeMounts", "secret",
        "enableBuiltInSecretEnvVars", "extraEnv", "extraEnvFrom", "priorityClasses", "extraSecrets",
        "extraConfigMaps", "data", "fernetKey", "fernetKeySecretName", "fernetKeySecretAnnotations",
        "apiSecretKey", "apiSecretAnnotations", "apiSecretKeySecretName", "jwtSecret", "jwtSecretName",
        "jwtSecretAnnotations", "kerberos", "workers", "scheduler", "triggerer", "dagProcessor",
        "createUserJob", "migrateDatabaseJob", "apiServer", "statsd", "otelCollector", "databaseCleanup",
        "postgresql", "config", "multiNamespaceMode", "podTemplate", "dags", "logs",
    }
)  # fmt: skip

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"

# What each Kubernetes client call the KubernetesPodOperator makes needs from RBAC.
CALL_GRANTS = {
    "create_namespaced_pod": ("pods", "create"),
    "read_namespaced_pod": ("pods", "get"),
    "list_namespaced_pod": ("pods", "list"),
    "patch_namespaced_pod": ("pods", "patch"),
    "delete_namespaced_pod": ("pods", "delete"),
    "read_namespaced_pod_log": ("pods/log", "get"),
    "list_namespaced_event": ("events", "list"),
}
# Used only for the XCom sidecar and to stop an Istio sidecar; the package's pods have neither.
EXEC_CALLS = {"connect_get_namespaced_pod_exec"}


# ----------------------------------------------------------------------------------- helpers


def load_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "values.yaml").read_text())


def load_manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "xdmod-namespace.yaml").read_text()) if doc]


def site_files(values: dict[str, Any]) -> dict[str, str]:
    """The files of the site-config ConfigMap (extraConfigMaps data is one YAML string)."""
    (configmap,) = values["extraConfigMaps"].values()
    return yaml.safe_load(configmap["data"])


def deployed_site(values: dict[str, Any]) -> SiteConfig:
    return parse_site_config(site_files(values)["site.yaml"], "deploy/openshift/values.yaml site.yaml")


def example_site() -> SiteConfig:
    path = ROOT / "include" / "site-config.example.yaml"
    return parse_site_config(path.read_text(), str(path))


def walk(node: Any, path: tuple[Any, ...] = ()):
    """Every (path, key, value) of a nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def conn_ids(site: SiteConfig) -> set[str]:
    return {value for _, key, value in walk(site.model_dump()) if key.endswith("conn_id") and isinstance(value, str)}


def find(manifests: list[dict[str, Any]], kind: str, name: str, namespace: str) -> dict[str, Any]:
    hits = [
        m
        for m in manifests
        if m["kind"] == kind and m["metadata"]["name"] == name and m["metadata"].get("namespace") == namespace
    ]
    assert len(hits) == 1, f"{kind} {namespace}/{name}: {len(hits)} definitions in xdmod-namespace.yaml"
    return hits[0]


def only(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [m for m in manifests if m["kind"] == kind]
    return doc


def airflow_namespace(values: dict[str, Any], manifests: list[dict[str, Any]]) -> str:
    name = values["scheduler"]["serviceAccount"]["name"]
    (sa,) = [m for m in manifests if m["kind"] == "ServiceAccount" and m["metadata"]["name"] == name]
    return sa["metadata"]["namespace"]


def xdmod_pods(site: SiteConfig) -> list[dict[str, Any]]:
    """Pods the package's own factory builds from the deployed site config: a step with a staged
    input (init container, staging volume) and one without."""
    resource = site.resources[0]
    xdmod = site.xdmod_for(resource)
    root = site.staging_for(resource).root
    staged = XdmodInput("day.log", f"{root}/{resource.name}/2026-11-20/v-ab/day.log", "0f" * 32)
    pods = []
    for command in (shred_slurm(resource.xdmod_resource, xdmod.input_dir, staged), ingest()):
        operator = xdmod_pod_operator(
            task_id="xdmod_step", resource=resource.name, command=command, kube=xdmod.kubernetes,
            input_dir=xdmod.input_dir, staging_root=root, execution_timeout=dt.timedelta(hours=2),
        )  # fmt: skip
        assert operator.do_xcom_push is False and operator.deferrable is False
        pods.append(pod_spec(operator))
    return pods


# ----------------------------------------------------------------------------------- values


def test_values_top_level_keys_are_in_the_chart_schema():
    unknown = set(load_values()) - CHART_TOP_LEVEL_KEYS
    assert not unknown, f"not top-level keys of the chart's values.schema.json @ {CHART_SCHEMA_COMMIT}: {unknown}"


def test_no_fixed_uid_or_group_anywhere_and_gid_zero():
    values = load_values()
    assert values["gid"] == 0
    for path, key, value in walk(values):
        where = ".".join(map(str, (*path, key)))
        assert key not in ("runAsUser", "fsGroup", "uid"), f"{where}: restricted-v2 assigns the UID and fsGroup"
        if key == "runAsGroup":
            assert value == 0, f"{where}: only group 0"
    # The chart falls back to `uid`/`gid` only for a component with no context at all: the global
    # contexts are set, and so are those of the components that fall back to their own `uid`.
    assert values["securityContexts"]["pod"] and values["securityContexts"]["containers"]
    assert values["statsd"]["securityContexts"]["pod"] and values["statsd"]["securityContexts"]["container"]
    assert values["dags"]["gitSync"]["securityContexts"]["container"]
    # Components with their own uid fallback that these values do not cover must stay off.
    assert values["executor"] == "LocalExecutor"  # no Redis, no Celery workers, no flower
    assert not values.get("pgbouncer", {}).get("enabled", False)


def _contexts(values: dict[str, Any]):
    """Every (where, level, context) the values set: chart securityContexts and raw containers."""
    for path, key, value in walk(values):
        where = ".".join(map(str, (*path, key)))
        if key == "securityContexts":
            for level, ctx in value.items():
                yield where, "pod" if level == "pod" else "container", ctx
        elif key == "securityContext":
            assert "image" in _at(values, path), f"{where}: use securityContexts (the chart's legacy key)"
            yield where, "container", value


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def test_every_security_context_is_restricted_v2():
    values = load_values()
    seen = list(_contexts(values))
    assert len(seen) >= 7  # global pod + containers, statsd x2, git-sync, the API server's git-sync x2
    for where, level, ctx in seen:
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        if level == "pod":
            assert ctx["runAsNonRoot"] is True, where
        else:
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert not ctx.get("privileged") and "add" not in ctx["capabilities"], where
    for group in ("extraContainers", "extraInitContainers"):
        for container in values["apiServer"][group]:
            assert "securityContext" in container, f"apiServer.{group}: {container['name']} has no securityContext"


def test_external_database_and_airflow_secrets_from_existing_secrets():
    values = load_values()
    assert values["postgresql"]["enabled"] is False
    assert values["data"]["metadataSecretName"]
    assert "metadataConnection" not in values["data"]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    for inline in ("fernetKey", "apiSecretKey", "jwtSecret", "extraSecrets"):
        assert inline not in values, f"{inline}: would put a secret in the values"


def test_dags_and_plugins_from_one_git_checkout():
    values = load_values()
    git = values["dags"]["gitSync"]
    assert git["enabled"] is True and urlsplit(git["repo"]).scheme == "https"
    assert git["subPath"] == "dags" and (ROOT / git["subPath"] / "usage_daily.py").is_file()
    home = values.get("airflowHome", "/opt/airflow")
    checkout = PurePosixPath(values["dags"].get("mountPath") or f"{home}/dags") / "repo"
    plugins = PurePosixPath(values["config"]["core"]["plugins_folder"])
    assert plugins == checkout / "plugins" and (ROOT / "plugins" / "xdmod_usage" / "dag_factory.py").is_file()
    assert (ROOT / "include" / "sql").is_dir()  # found beside plugins/ in the same checkout (config.SQL_DIR)
    # The API server (coverage page plugin) syncs the same repository and ref into its own volume.
    api = values["apiServer"]
    env = {e["name"]: e["value"] for e in api["env"]}
    (mount,) = api["extraVolumeMounts"]
    assert PurePosixPath(env["AIRFLOW__CORE__PLUGINS_FOLDER"]) == PurePosixPath(mount["mountPath"]) / "repo" / "plugins"
    assert {v["name"] for v in api["extraVolumes"]} == {mount["name"]}
    for container in (*api["extraInitContainers"], *api["extraContainers"]):
        sync = {e["name"]: e.get("value") for e in container["env"]}
        assert (sync["GITSYNC_REPO"], sync["GITSYNC_REF"]) == (git["repo"], git["ref"]), container["name"]
        assert sync["GITSYNC_LINK"] == "repo"
        assert {"name": mount["name"], "mountPath": sync["GITSYNC_ROOT"]} in container["volumeMounts"]


def test_every_connection_id_the_configs_name_comes_from_a_secret():
    values = load_values()
    wanted = conn_ids(example_site()) | conn_ids(deployed_site(values))
    assert {"xdmod_db", "prometheus_ocp", "openstack_cloud", "coldfront"} <= wanted  # the collector works
    supplied = {item["envName"]: item for item in values["secret"]}
    for conn_id in sorted(wanted):
        env_name = "AIRFLOW_CONN_" + conn_id.upper()
        assert env_name in supplied, f"connection {conn_id!r}: no {env_name} from a Secret in values.secret"
        assert supplied[env_name]["secretName"] and supplied[env_name]["secretKey"]
    inline = [e["name"] for e in values.get("env", []) if e["name"].startswith("AIRFLOW_CONN_")]
    assert not inline and "AIRFLOW_CONN_" not in (values.get("extraEnv") or "")


def test_no_password_in_values_and_fab_auth_manager_without_the_create_user_job():
    values = load_values()
    for path, key, _ in walk(values):
        assert key.lower() not in ("password", "pass", "token"), ".".join(map(str, (*path, key)))
    assert values["config"]["core"]["auth_manager"] == FAB_AUTH_MANAGER
    assert values["createUserJob"]["enabled"] is False  # its admin password would live in the values


def test_the_xdmod_pool_is_created_with_one_slot_by_the_migration_job():
    values = load_values()
    site = deployed_site(values)
    script = " ".join(values["migrateDatabaseJob"]["args"])
    assert script.index("airflow db migrate") < script.index("airflow pools set")
    for pool in {site.xdmod_for(r).pool for r in site.resources} | {site.xdmod.pool}:
        assert re.search(rf"airflow pools set {re.escape(pool)} 1 \"[^\"]+\" --include-deferred", script), pool


def test_site_config_comes_from_the_mounted_configmap():
    values = load_values()
    env = {e["name"]: e["value"] for e in values["env"]}
    config_path = PurePosixPath(env["XDMOD_USAGE_CONFIG"])
    (name,) = values["extraConfigMaps"]
    (volume,) = [v for v in values["volumes"] if v.get("configMap", {}).get("name") == name]
    (mount,) = [m for m in values["volumeMounts"] if m["name"] == volume["name"]]
    assert PurePosixPath(mount["mountPath"]) == config_path.parent and mount["readOnly"] is True
    files = site_files(values)
    assert config_path.name in files
    site = deployed_site(values)
    assert site.xdmod.runner == "kubernetes"
    for source in site.hierarchy.sources if site.hierarchy else ():
        if source.type == "file":  # the site's mapping file ships in the same ConfigMap
            assert PurePosixPath(source.path).parent == config_path.parent and PurePosixPath(source.path).name in files


def test_openlineage_transport_and_every_config_value_is_a_scalar():
    config = load_values()["config"]
    transport = json.loads(config["openlineage"]["transport"])
    assert transport["type"] == "http" and transport["url"]
    for section, options in config.items():  # the chart's schema takes scalars only under config.*
        for option, value in options.items():
            assert isinstance(value, str | int | float | bool), f"config.{section}.{option}"


# ----------------------------------------------------------------------------------- RBAC


def test_role_grants_exactly_what_the_pod_operator_needs():
    manifests = load_manifests()
    site = deployed_site(load_values())
    role = only(manifests, "Role")
    assert role["metadata"]["namespace"] == site.xdmod.kubernetes.namespace
    granted = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""] and "resourceNames" not in rule
        granted |= {(resource, verb) for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted == set(CALL_GRANTS.values())
    assert not any(resource == "pods/exec" for resource, _ in granted)
    assert not any(kind == "ClusterRole" or kind == "ClusterRoleBinding" for kind in (m["kind"] for m in manifests))


def test_the_provider_makes_no_call_the_role_does_not_cover():
    """Read the installed cncf-kubernetes provider: every namespaced call of the operator and its pod
    manager is one the Role grants (or pod exec, which only the XCom/Istio sidecars use)."""
    import airflow.providers.cncf.kubernetes as provider

    base = Path(provider.__file__).parent
    calls = set()
    for source in (base / "operators" / "pod.py", base / "utils" / "pod_manager.py"):
        calls |= set(re.findall(r"\b([a-z_]+_namespaced_[a-z_]+)\b", source.read_text()))
    assert {"create_namespaced_pod", "read_namespaced_pod_log"} <= calls  # the scan finds the calls
    unknown = calls - set(CALL_GRANTS) - EXEC_CALLS
    assert not unknown, f"the provider now calls {unknown}: decide the RBAC, then extend CALL_GRANTS"
    assert {CALL_GRANTS[c] for c in calls & set(CALL_GRANTS)} == set(CALL_GRANTS.values())
    for pod in xdmod_pods(deployed_site(load_values())):  # no sidecar that exec would be for
        assert [c["name"] for c in pod["spec"]["containers"]] == ["base"]


def test_rolebinding_binds_the_service_account_the_values_give_the_task_runners():
    values = load_values()
    manifests = load_manifests()
    role, binding = only(manifests, "Role"), only(manifests, "RoleBinding")
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}  # fmt: skip
    sa = values["scheduler"]["serviceAccount"]
    assert sa["create"] is False and sa["automountServiceAccountToken"] is True
    assert values["workers"]["kubernetes"]["serviceAccount"] == {"create": False, "name": sa["name"]}
    namespace = airflow_namespace(values, manifests)
    assert namespace != role["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": namespace}]
    find(manifests, "ServiceAccount", sa["name"], namespace)


# ----------------------------------------------------------------------------------- XDMoD pods


def test_every_object_the_xdmod_pods_reference_is_defined():
    values = load_values()
    manifests = load_manifests()
    site = deployed_site(values)
    kube = site.xdmod.kubernetes
    find(manifests, "Namespace", kube.namespace, None)
    referenced = {"ConfigMap": set(), "Secret": set(), "PersistentVolumeClaim": set(), "ServiceAccount": set()}
    for pod in xdmod_pods(site):
        spec = pod["spec"]
        assert pod["metadata"]["namespace"] == kube.namespace
        referenced["ServiceAccount"].add(spec["serviceAccountName"])
        for volume in spec["volumes"]:
            if "configMap" in volume:
                referenced["ConfigMap"].add(volume["configMap"]["name"])
            if "secret" in volume:
                secret = find(manifests, "Secret", volume["secret"]["secretName"], kube.namespace)
                for item in volume["secret"].get("items", []):
                    assert item["key"] in secret["stringData"], f"Secret {secret['metadata']['name']}: {item['key']}"
                referenced["Secret"].add(volume["secret"]["secretName"])
            if "persistentVolumeClaim" in volume:
                referenced["PersistentVolumeClaim"].add(volume["persistentVolumeClaim"]["claimName"])
        for container in (*spec.get("initContainers", []), *spec["containers"]):
            for source in container.get("envFrom") or []:
                referenced["Secret"].add(source["secretRef"]["name"])
    assert referenced["PersistentVolumeClaim"] == {kube.staging_claim}  # the staged input did mount it
    for kind, names in referenced.items():
        for name in names:
            find(manifests, kind, name, kube.namespace)
    sa = find(manifests, "ServiceAccount", kube.service_account, kube.namespace)
    assert sa["automountServiceAccountToken"] is False
    assert "portal_settings.ini" not in find(manifests, "ConfigMap", kube.config_map, kube.namespace)["data"]


def test_staging_reaches_both_sides_at_the_same_path_on_shared_claims():
    values = load_values()
    manifests = load_manifests()
    site = deployed_site(values)
    kube = site.xdmod.kubernetes
    root = urlsplit(site.staging.root)
    assert root.scheme == "file"
    (pod, _) = xdmod_pods(site)
    (init,) = pod["spec"]["initContainers"]
    pod_mounts = {m["name"]: m for m in init["volumeMounts"]}
    (volume,) = [v for v in values["volumes"] if "persistentVolumeClaim" in v]
    (mount,) = [m for m in values["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == root.path == pod_mounts["xdmod-staging"]["mountPath"]
    assert not mount.get("readOnly")  # Airflow writes the days there
    namespaces = {kube.namespace: kube.staging_claim,
                  airflow_namespace(values, manifests): volume["persistentVolumeClaim"]["claimName"]}  # fmt: skip
    for namespace, claim in namespaces.items():
        pvc = find(manifests, "PersistentVolumeClaim", claim, namespace)
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], f"{namespace}/{claim}"


@pytest.mark.parametrize("name", ["values.yaml", "xdmod-namespace.yaml"])
def test_no_real_credentials_in_the_templates(name):
    text = (DEPLOY / name).read_text()
    for pattern in (r"-----BEGIN [A-Z ]*PRIVATE KEY", r"\bgh[pousr]_[A-Za-z0-9]{20,}", r"AKIA[0-9A-Z]{16}"):
        assert not re.search(pattern, text), pattern
    manifests = load_manifests()
    for secret in (m for m in manifests if m["kind"] == "Secret"):
        assert "data" not in secret  # templates use stringData with visible placeholders
        assert all("CHANGE_ME" in value for value in secret["stringData"].values())
