#!/usr/bin/env python3
"""What a schema cannot see in the deployment files: the references between them, the
drain arithmetic, and the settings ferry must get. Run by scripts/test-manifests.sh after
the schema validators; needs PyYAML (installed with check-jsonschema's dependencies or by
that script). Prints one line per check and "manifests: N passed, N failed" at the end.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> None:
    results.append((bool(ok), what))


def load_k8s() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__file__"] = str(path.relative_to(ROOT))
                docs.append(doc)
    return docs


def known_setting_keys() -> set[str]:
    """The settings the README's table documents: `section.key` (and `a.b.c`)."""
    keys = set()
    text = (ROOT / "README.md").read_text()
    for row in re.findall(r"^\| `([a-z0-9_.]+)`(?: / `([a-z0-9_]+)`)? \|", text, re.M):
        keys.add(row[0])
        if row[1]:
            keys.add(row[0].rsplit(".", 1)[0] + "." + row[1])
    return keys


def env_key(name: str) -> str:
    return ".".join(name[len("FERRY__"):].lower().split("__"))


def k8s_checks(docs: list[dict]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    ns = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    check(ns == {"ferry"} and "ferry" in by_kind.get("Namespace", {}),
          f"k8s: every object is in the namespace ferry, which 00-namespace.yaml makes ({ns})")

    dep = by_kind["Deployment"]["ferry"]
    pod = dep["spec"]["template"]["spec"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    (ctr,) = pod["containers"]
    check(dep["spec"]["replicas"] == 3, "k8s: the Deployment has 3 replicas")
    sel = dep["spec"]["selector"]["matchLabels"]
    check(sel.items() <= pod_labels.items(), "k8s: the Deployment's selector matches its pods")

    cm = by_kind["ConfigMap"]["ferry"]["data"]
    secret = by_kind["Secret"]["ferry"].get("stringData", {})
    env_sources = {(s.get("configMapRef") or s.get("secretRef"))["name"] for s in ctr.get("envFrom", [])}
    check(env_sources == {"ferry"} and "ferry" in by_kind["Secret"],
          "k8s: the pods take their settings from the ConfigMap and the Secret ferry")
    keys = known_setting_keys()
    settings = {**cm, **secret}
    unknown = [k for k in settings if not k.startswith("FERRY__") or env_key(k) not in keys]
    check(keys and not unknown, f"k8s: every FERRY__ variable names a setting of the README's table ({unknown})")
    check(settings.get("FERRY__STORAGE__BACKEND") == "s3" and settings.get("FERRY__SESSIONS__BACKEND") == "redis",
          "k8s: cloud mode (S3 storage, Redis sessions)")
    check("FERRY__AUTH__SECRET" in secret and "FERRY__AUTH__SECRET" not in cm,
          "k8s: auth.secret comes from the Secret, not the ConfigMap")
    check(settings.get("FERRY__SERVER__LISTEN", "").startswith("0.0.0.0:"), "k8s: ferry listens on every interface")

    # The drain arithmetic.
    pre_stop = ctr["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(cm["FERRY__SERVER__DRAIN_DELAY_SECS"])
    shutdown = int(cm["FERRY__SERVER__SHUTDOWN_TIMEOUT_SECS"])
    grace = pod["terminationGracePeriodSeconds"]
    check(grace >= pre_stop + drain + shutdown + 5,
          f"k8s: terminationGracePeriodSeconds {grace} >= preStop {pre_stop} + drain_delay {drain}"
          f" + shutdown_timeout {shutdown} + 5 s margin")
    rp = ctr["readinessProbe"]
    check(drain >= rp["periodSeconds"] * rp["failureThreshold"] + rp.get("timeoutSeconds", 1),
          f"k8s: the readiness probe sees the drain's 503 within drain_delay ({drain} s)")
    check(rp["httpGet"]["path"] == "/readyz" and ctr["livenessProbe"]["httpGet"]["path"] == "/healthz",
          "k8s: readiness on /readyz, liveness on /healthz")
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    listen_port = int(settings["FERRY__SERVER__LISTEN"].rsplit(":", 1)[1])
    check(ports.get("http") == listen_port, f"k8s: the container port is ferry's listen port ({ports})")

    # Security and resources.
    sc, psc = ctr["securityContext"], pod["securityContext"]
    check(psc.get("runAsNonRoot") and psc.get("runAsUser") == 10001 and sc.get("readOnlyRootFilesystem")
          and sc.get("allowPrivilegeEscalation") is False and sc["capabilities"]["drop"] == ["ALL"],
          "k8s: non-root (10001), read-only root filesystem, no privilege escalation, no capabilities")
    mounts = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    check("/tmp" in mounts and "emptyDir" in vols.get(mounts["/tmp"], {}), "k8s: an emptyDir on /tmp")
    res = ctr["resources"]
    check(all(k in res.get(p, {}) for p in ("requests", "limits") for k in ("cpu", "memory")),
          "k8s: CPU and memory requests and limits are set")
    workers = int(cm.get("FERRY__SERVER__WORKERS", "0"))
    check(workers and str(workers) == str(res["limits"]["cpu"]).rstrip(),
          "k8s: server.workers matches the CPU limit")
    check(pod.get("serviceAccountName") in by_kind.get("ServiceAccount", {}), "k8s: the ServiceAccount exists")

    # Service, Ingress, HPA, PDB point at the Deployment.
    svc = by_kind["Service"]["ferry"]
    check(svc["spec"]["selector"].items() <= pod_labels.items(), "k8s: the Service selects ferry's pods")
    check(svc["spec"].get("sessionAffinity", "None") == "None", "k8s: the Service has no session affinity")
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    check(all(p["targetPort"] in ports for p in svc["spec"]["ports"]), "k8s: the Service targets the named port")
    ing = by_kind["Ingress"]["ferry"]
    ann = ing["metadata"]["annotations"]
    check(ann.get("nginx.ingress.kubernetes.io/proxy-body-size") == "32m"
          and ann.get("nginx.ingress.kubernetes.io/proxy-request-buffering") == "off"
          and int(ann.get("nginx.ingress.kubernetes.io/proxy-read-timeout", 0)) >= 60
          and int(ann.get("nginx.ingress.kubernetes.io/proxy-send-timeout", 0)) >= 60,
          "k8s: the Ingress allows 32m bodies, streams them unbuffered, with long timeouts")
    check(not any("affinity" in k for k in ann), "k8s: the Ingress has no affinity (no sticky cookie)")
    max_chunk = int(cm.get("FERRY__UPLOADS__MAX_CHUNK_SIZE", 31457280))
    check(max_chunk < 32 * 1024 * 1024, "k8s: uploads.max_chunk_size fits under the 32m body limit")
    backends = [p["backend"]["service"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    check(all(b["name"] == "ferry" and b["port"].get("name") in svc_ports for b in backends),
          "k8s: the Ingress routes to the Service's named port")
    hpa = by_kind["HorizontalPodAutoscaler"]["ferry"]
    check(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ferry"}
          and hpa["spec"]["minReplicas"] >= 3, "k8s: the HPA scales the Deployment, never below 3")
    pdb = by_kind["PodDisruptionBudget"]["ferry"]
    check(pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), "k8s: the PDB selects ferry's pods")

    # The example Redis.
    sts = by_kind["StatefulSet"]["redis"]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    joined = " ".join(args)
    check("--appendonly yes" in joined and "--maxmemory-policy noeviction" in joined,
          "k8s: the example Redis keeps an append-only file and never evicts")
    check(sts["spec"]["serviceName"] in by_kind["Service"], "k8s: the Redis StatefulSet's Service exists")
    check("redis.ferry.svc" in secret.get("FERRY__SESSIONS__REDIS__URL", ""),
          "k8s: ferry's Redis URL names the example Redis's Service")


def compose_checks() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    ferries = sorted(s for s in services if re.fullmatch(r"ferry-\d+", s))
    check(len(ferries) == 3, f"compose: three ferry replicas ({ferries})")
    envs = [services[s]["environment"] for s in ferries]
    check(all(e == envs[0] for e in envs), "compose: the replicas share one configuration (one auth.secret)")
    env = envs[0]
    check(env.get("FERRY__STORAGE__BACKEND") == "s3" and env.get("FERRY__SESSIONS__BACKEND") == "redis",
          "compose: cloud mode (S3 storage, Redis sessions)")
    keys = known_setting_keys()
    unknown = [k for k in env if env_key(k) not in keys]
    check(not unknown, f"compose: every FERRY__ variable names a setting of the README's table ({unknown})")
    check(all(services[s].get("read_only") for s in ferries), "compose: read-only root filesystems")
    for name, svc in services.items():
        for dep, how in (svc.get("depends_on") or {}).items():
            check(dep in services and how.get("condition") in
                  ("service_started", "service_healthy", "service_completed_successfully"),
                  f"compose: {name} depends on an existing service {dep} ({how})")
            if how.get("condition") == "service_healthy":
                check("healthcheck" in services[dep], f"compose: {dep} has the healthcheck {name} waits for")
        check(svc.get("restart", "no") in ("no", "always", "on-failure", "unless-stopped"),
              f"compose: {name} has a valid restart policy")
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if source.startswith("."):
                check((COMPOSE.parent / source).exists(), f"compose: {name} mounts an existing file {source}")
            else:
                check(source in (doc.get("volumes") or {}), f"compose: {name}'s volume {source} is declared")
    redis_cmd = " ".join(services["redis"]["command"])
    check("--appendonly yes" in redis_cmd, "compose: Redis keeps an append-only file")
    bucket = env["FERRY__STORAGE__S3__BUCKET"]
    check(f"store/{bucket}" in " ".join(services["minio-bucket"]["entrypoint"]),
          "compose: the bucket step makes the bucket ferry uses")
    endpoint_host = env["FERRY__STORAGE__S3__ENDPOINT"].split("//", 1)[1].split(":", 1)[0]
    redis_host = env["FERRY__SESSIONS__REDIS__URL"].split("//", 1)[1].split(":", 1)[0]
    check(endpoint_host in services and redis_host in services, "compose: the S3 and Redis hosts are services")

    conf = NGINX_CONF.read_text()
    upstreams = re.findall(r"^\s*server\s+([a-z0-9-]+):(\d+)", conf, re.M)
    check(sorted(h for h, _ in upstreams) == ferries and all(p == "8080" for _, p in upstreams),
          "compose: nginx's upstream is the three replicas on port 8080")
    check(re.search(r"client_max_body_size\s+32m;", conf) and re.search(r"proxy_request_buffering\s+off;", conf)
          and not re.search(r"^\s*(ip_hash|hash|sticky)\b", conf, re.M),
          "compose: nginx allows 32m bodies, unbuffered, round-robin without stickiness")
    listen = re.search(r"^\s*listen\s+(\d+);", conf, re.M).group(1)
    check(any(p.endswith(f":{listen}") for p in services["nginx"].get("ports", [])),
          "compose: nginx's published port is the one it listens on")


def main() -> int:
    k8s_checks(load_k8s())
    compose_checks()
    for ok, what in results:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    failed = sum(1 for ok, _ in results if not ok)
    print(f"manifests: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
