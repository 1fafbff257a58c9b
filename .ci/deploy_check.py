"""Offline checks of the deployment files (deploy/), run by .ci/deploy.sh in
its virtual environment, beside the tools it runs itself (hadolint, docker
compose config). Each subcommand prints what it checks and exits non-zero,
naming every problem, when something is wrong.

  python3 .ci/deploy_check.py dockerfile
  python3 .ci/deploy_check.py compose POSTGRES.json SQLITE.json   (docker compose config --format json)
  python3 .ci/deploy_check.py helm KUBE_VERSION...
  python3 .ci/deploy_check.py alerts
  python3 .ci/deploy_check.py dashboard

The metric names the alerts and the dashboard may use are read from the code
(metrics::counter!/gauge!/histogram! in crates/), so a renamed metric fails
here instead of leaving an empty panel or an alert that never fires.
"""

import base64
import copy
import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "integro"

problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)
    print(f"  FAIL {text}")


def ok(text: str) -> None:
    print(f"  ok   {text}")


def finish(what: str) -> None:
    if problems:
        print(f"deploy: {what}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)


# --------------------------------------------------------------------------
# The metrics the binary exports, read from the code.

METRIC_CALL = re.compile(r'metrics::(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
# Gauges describing the one shared queue, reported alike by every worker.
SHARED_GAUGES = {"integro_jobs", "integro_oldest_ready_job_age_seconds"}


def exported_metrics() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "crates").rglob("*.rs")):
        if "/tests/" in str(path.relative_to(ROOT)):
            continue
        for kind, name in METRIC_CALL.findall(path.read_text(encoding="utf-8")):
            found[name] = kind
    if len(found) < 10:
        problem(f"only {len(found)} metrics found in crates/ (metrics::counter!/gauge!/histogram!): "
                "has the way metrics are recorded changed? Update METRIC_CALL in .ci/deploy_check.py")
    # Histograms get buckets when their name ends in _seconds (the exporter's
    # Matcher::Suffix in startup.rs); the others are rendered as summaries.
    startup = (ROOT / "crates/integro-server/src/startup.rs").read_text(encoding="utf-8")
    if 'Matcher::Suffix("_seconds".into())' not in startup:
        problem("crates/integro-server/src/startup.rs no longer gives buckets to the _seconds histograms "
                "(Matcher::Suffix(\"_seconds\")): update series_names() in .ci/deploy_check.py")
    return found


def series_names(metrics: dict[str, str]) -> dict[str, str]:
    """Every series name Prometheus sees, mapped to the metric it belongs to."""
    series = {"up": "up"}
    for name, kind in metrics.items():
        if kind == "histogram" and name.endswith("_seconds"):
            for suffix in ("_bucket", "_sum", "_count"):
                series[name + suffix] = name
        elif kind == "histogram":  # a summary: name{quantile=...}, _sum, _count
            for suffix in ("", "_sum", "_count"):
                series[name + suffix] = name
        else:
            series[name] = name
    return series


def promql_problems(expr: str, series: dict[str, str], where: str,
                    aggregated: bool = True) -> tuple[list[str], set[str]]:
    """Parses expr; returns (problems, metric names used). With aggregated,
    the shared-queue gauges must be aggregated with max."""
    import promql_parser

    try:
        tree = promql_parser.parse(expr)
    except Exception as e:  # the parser raises ValueError with the reason
        return [f"{where}: PromQL does not parse: {e}: {expr}"], set()
    found: list[str] = []
    used: set[str] = set()
    aggregations: list[str] = []

    def pre(node):
        if isinstance(node, promql_parser.AggregateExpr):
            aggregations.append(str(node.op))
        if isinstance(node, promql_parser.VectorSelector):
            names = [node.name] if node.name else []
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    names.extend(m.value.split("|"))
            if not names:
                found.append(f"{where}: a selector names no metric: {expr}")
            for name in names:
                if name not in series:
                    found.append(f"{where}: `{name}` is not a metric the binary exports "
                                 f"(nor a series of one): {expr}")
                    continue
                metric = series[name]
                used.add(metric)
                if aggregated and metric in SHARED_GAUGES and (not aggregations or aggregations[-1] != "max"):
                    found.append(f"{where}: `{name}` is the shared queue, reported alike by every worker: "
                                 f"aggregate it with max (not {aggregations[-1] if aggregations else 'nothing'}): {expr}")
        return True

    def post(node):
        if isinstance(node, promql_parser.AggregateExpr):
            aggregations.pop()
        return True

    promql_parser.walk(tree, pre, post)
    return found, used


# --------------------------------------------------------------------------
# Dockerfile and .dockerignore (hadolint lints the Dockerfile itself).

def dockerignore_matches(path: str, pattern: str) -> bool:
    """Roughly Docker's rule: the pattern matches the path or one of its
    parent directories; a leading **/ matches at any depth."""
    pattern = pattern.strip().rstrip("/")
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if pattern.startswith("**/"):
        tail = pattern[3:]
        candidates = ["/".join(parts[i: j + 1]) for i in range(len(parts)) for j in range(i, len(parts))]
        return any(fnmatch.fnmatchcase(c, tail) for c in candidates)
    return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)


def check_dockerfile() -> None:
    print("deploy: Dockerfile and .dockerignore")
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line.split()[1] for line in lines if line.split()[0].upper() == "FROM"]
    for image in froms:
        tag = image.rsplit("/", 1)[-1]
        if ":" not in tag or tag.endswith(":latest"):
            problem(f"FROM {image}: pin the image by tag")
    if len(froms) != 2:
        problem(f"expected a builder and a runtime stage, found {len(froms)} FROM lines")
    else:
        ok(f"two stages, pinned: {froms[0]} -> {froms[1]}")
        if not froms[1].startswith("gcr.io/distroless/cc-debian12:nonroot"):
            problem(f"the runtime image is {froms[1]}, not gcr.io/distroless/cc-debian12:nonroot")
        rust = re.match(r"rust:(\d+)\.(\d+)", froms[0])
        manifest = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
        need = manifest["workspace"]["package"].get("rust-version", "0.0")
        need_v = tuple(int(x) for x in need.split(".")[:2])
        if not rust:
            problem(f"the builder {froms[0]} is not a rust:X.Y image")
        elif (int(rust.group(1)), int(rust.group(2))) < need_v:
            problem(f"the builder {froms[0]} is older than the workspace's rust-version {need}")
        else:
            ok(f"builder toolchain {rust.group(1)}.{rust.group(2)} >= rust-version {need}")
        if "bookworm" not in froms[0] or "debian12" not in froms[1]:
            problem("builder and runtime must be the same Debian release (bookworm = debian12): glibc")
    runs = " ".join(line for line in lines if line.split()[0].upper() == "RUN")
    if "cargo build --release --locked -p integro" not in runs:
        problem("the builder does not run `cargo build --release --locked -p integro`")
    for target in ("/usr/local/cargo/registry", "/src/target"):
        if f"--mount=type=cache,target={target}" not in runs:
            problem(f"no BuildKit cache mount for {target}")
    # The runtime stage: the lines after the last FROM.
    last = max(i for i, line in enumerate(lines) if line.split()[0].upper() == "FROM")
    directives: dict[str, list[str]] = {}
    for line in lines[last + 1:]:
        word, _, rest = line.strip().partition(" ")
        directives.setdefault(word.upper(), []).append(rest.strip())
    user = directives.get("USER", [])
    if not user or user[-1].split(":")[0] in ("root", "0"):
        problem("the runtime stage must end with a non-root USER")
    for name, want in (("ENTRYPOINT", '["/usr/local/bin/integro"]'), ("CMD", '["serve"]'),
                       ("EXPOSE", "8080"), ("VOLUME", "/data")):
        if directives.get(name, [""])[-1].strip() != want:
            problem(f"{name} is {directives.get(name)}, expected {want}")
    hc = directives.get("HEALTHCHECK", [""])[-1]
    if 'CMD ["/usr/local/bin/integro", "health"]' not in hc:
        problem("HEALTHCHECK must be the exec form CMD [\"/usr/local/bin/integro\", \"health\"] (no shell in the image)")
    env = " ".join(directives.get("ENV", []))
    for setting in ("INTEGRO_DATA_DIR=/data", "INTEGRO_LISTEN=0.0.0.0:8080"):
        if setting not in env:
            problem(f"ENV lacks {setting}")
    if not problems:
        ok("non-root USER, exec-form HEALTHCHECK/ENTRYPOINT/CMD, EXPOSE 8080, VOLUME /data, ENV")

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    if any(p.startswith("!") for p in patterns):
        problem(".dockerignore has exceptions (!): extend this check before using them")
    # Every file the build reads must reach it: what git tracks of the
    # workspace's manifests, .cargo/, crates/ and the bench member.
    sources = ["Cargo.toml", "Cargo.lock", ".cargo", "crates", "bench/Cargo.toml", "bench/src"]
    try:
        needed = subprocess.run(["git", "ls-files", "--", *sources], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        needed = [str(p.relative_to(ROOT)) for s in sources for p in
                  ([ROOT / s] if (ROOT / s).is_file() else (ROOT / s).rglob("*")) if p.is_file()]
    if len(needed) < 20:
        problem(f"found only {len(needed)} source files to check against .dockerignore")
    for path in needed:
        hit = [p for p in patterns if dockerignore_matches(path, p)]
        if hit:
            problem(f".dockerignore leaves out {path}, which the build needs (pattern {hit[0]})")
    for path in ["target/release/integro", "crates/integro/target/x", ".git/HEAD", "integro-data/master.key",
                 "fuzz/target/x", "bench/results/x.json", "x/integro.db"]:
        if not any(dockerignore_matches(path, p) for p in patterns):
            problem(f".dockerignore lets {path} into the build context")
    ok(f".dockerignore keeps the {len(needed)} source files and drops target/, .git, data directories and master keys")
    finish("Dockerfile")


# --------------------------------------------------------------------------
# Compose files, as `docker compose config --format json` resolved them.

def env_of(service: dict) -> dict:
    return service.get("environment") or {}


def check_compose(postgres_json: str, sqlite_json: str) -> None:
    print("deploy: compose files (resolved by docker compose config)")
    c = json.loads(Path(postgres_json).read_text())
    s = c.get("services", {})
    want = {"postgres", "migrate", "web", "worker"}
    if set(s) != want:
        problem(f"compose.yaml services are {sorted(s)}, expected {sorted(want)}")
        finish("compose")
    pg = s["postgres"]
    if not str(pg.get("image", "")).startswith("postgres:16"):
        problem(f"postgres image is {pg.get('image')}, expected postgres:16")
    if "pg_isready" not in " ".join(pg.get("healthcheck", {}).get("test", [])):
        problem("postgres has no pg_isready healthcheck")
    if not any(v.get("target") == "/var/lib/postgresql/data" and v.get("type") == "volume"
               for v in pg.get("volumes", [])):
        problem("postgres keeps its data in no named volume")
    mig = s["migrate"]
    if mig.get("command") != ["migrate"] or mig.get("restart") != "no":
        problem("migrate must run `migrate` once (restart: no)")
    if mig.get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
        problem("migrate must wait for postgres to be healthy")
    for name in ("web", "worker"):
        svc = s[name]
        if svc.get("depends_on", {}).get("migrate", {}).get("condition") != "service_completed_successfully":
            problem(f"{name} must wait for migrate to complete successfully")
    for name in ("migrate", "web", "worker"):
        e = env_of(s[name])
        if e.get("INTEGRO_AUTO_MIGRATE") != "false":
            problem(f"{name}: INTEGRO_AUTO_MIGRATE must be false (migrate runs migrations)")
        if not str(e.get("INTEGRO_DATABASE_URL", "")).startswith("postgres://"):
            problem(f"{name}: INTEGRO_DATABASE_URL must point at PostgreSQL")
        if "INTEGRO_MASTER_KEY" not in e:
            problem(f"{name}: no INTEGRO_MASTER_KEY")
        if not s[name].get("read_only") or "ALL" not in s[name].get("cap_drop", []):
            problem(f"{name}: must be read_only with every capability dropped")
    web = s["web"]
    if env_of(web).get("INTEGRO_WORKERS") != "0" or web.get("command") != ["serve"]:
        problem("web must be `serve` with INTEGRO_WORKERS=0")
    if not any(str(p.get("target")) == "8080" for p in web.get("ports", [])):
        problem("web must publish port 8080")
    wk = s["worker"]
    if wk.get("command") != ["worker"] or wk.get("deploy", {}).get("replicas") != 2:
        problem("worker must be `worker` with deploy.replicas: 2")
    if env_of(wk).get("INTEGRO_WORKER_LISTEN") != "0.0.0.0:9091":
        problem("worker: INTEGRO_WORKER_LISTEN must be 0.0.0.0:9091 (probed from outside its loopback)")
    if wk.get("healthcheck", {}).get("test") != ["CMD", "/usr/local/bin/integro", "health", "--url",
                                                 "http://127.0.0.1:9091"]:
        problem("worker's healthcheck must be integro health --url http://127.0.0.1:9091")
    if not problems:
        ok("compose.yaml: postgres 16 (pg_isready, volume) -> migrate -> web (INTEGRO_WORKERS=0) + 2 workers (9091)")

    q = json.loads(Path(sqlite_json).read_text())
    services = q.get("services", {})
    if len(services) != 1:
        problem(f"compose.sqlite.yaml must have one service, has {sorted(services)}")
        finish("compose")
    (name, svc), = services.items()
    e = env_of(svc)
    if "INTEGRO_DATABASE_URL" in e:
        problem("compose.sqlite.yaml: SQLite is the default database; set no INTEGRO_DATABASE_URL")
    if e.get("INTEGRO_DATA_DIR", "/data") != "/data":
        problem("compose.sqlite.yaml: the data directory must be /data")
    if not any(v.get("type") == "volume" and v.get("target") == "/data" for v in svc.get("volumes", [])):
        problem("compose.sqlite.yaml: /data must be a named volume")
    if not any(str(p.get("target")) == "8080" for p in svc.get("ports", [])):
        problem("compose.sqlite.yaml: port 8080 must be published")
    if svc.get("deploy", {}).get("replicas", 1) != 1:
        problem("compose.sqlite.yaml: SQLite has one writer: no replicas")
    if e.get("INTEGRO_WORKERS") == "0":
        problem("compose.sqlite.yaml: the one process must run the jobs (INTEGRO_WORKERS > 0)")
    if not problems:
        ok(f"compose.sqlite.yaml: one service ({name}), SQLite in a named volume at /data, port 8080")
    finish("compose")


# --------------------------------------------------------------------------
# The Helm chart.

TEST_KEY = base64.b64encode(bytes(range(32))).decode()  # a valid shape; no secret
TEST_URL = "postgres://integro:ci@postgres.example:5432/integro"


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers", [])) + list(pod.get("containers", []))


def env_map(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def check_manifests(case: str, docs: list[dict], values: dict) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        name = d["metadata"]["name"]
        if name in by_kind.setdefault(d["kind"], {}):
            problem(f"{case}: two {d['kind']}s named {name}")
        by_kind[d["kind"]][name] = d
    sqlite = values["database"]["kind"] == "sqlite"
    secret_name = values.get("existingSecret") or "integro-secrets"
    lease = int(values["jobLeaseSecs"])
    deployments = by_kind.get("Deployment", {})
    pods = {f"Deployment/{n}": d["spec"]["template"] for n, d in deployments.items()}
    pods.update({f"Job/{n}": d["spec"]["template"] for n, d in by_kind.get("Job", {}).items()})

    for where, template in pods.items():
        spec = template["spec"]
        if spec.get("automountServiceAccountToken") is not False:
            problem(f"{case}: {where} mounts a ServiceAccount token")
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            problem(f"{case}: {where} pod is not runAsNonRoot")
        for c in containers(spec):
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
                    and sc.get("allowPrivilegeEscalation") is False
                    and "ALL" in sc.get("capabilities", {}).get("drop", [])):
                problem(f"{case}: {where} container {c['name']}: needs runAsNonRoot, readOnlyRootFilesystem, "
                        "no privilege escalation and every capability dropped")
            if not c.get("resources", {}).get("requests"):
                problem(f"{case}: {where} container {c['name']} requests no resources (HPA needs them)")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] != secret_name:
                    problem(f"{case}: {where} reads {e['name']} from Secret {ref['name']}, not {secret_name}")
            env = env_map(c)
            if "INTEGRO_MASTER_KEY" in env and "secretKeyRef" not in (env["INTEGRO_MASTER_KEY"] or {}):
                problem(f"{case}: {where}: INTEGRO_MASTER_KEY must come from a Secret")
            if not sqlite and c["name"] != "migrate" and "INTEGRO_MASTER_KEY" not in env:
                problem(f"{case}: {where} container {c['name']} has no INTEGRO_MASTER_KEY")
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        main = spec["containers"][0]
        env = env_map(main)
        if env.get("INTEGRO_AUTO_MIGRATE") != "false":
            problem(f"{case}: Deployment {name}: INTEGRO_AUTO_MIGRATE must be \"false\"")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if int(env.get("INTEGRO_JOB_LEASE_SECS") or 0) != lease or grace <= lease:
            problem(f"{case}: Deployment {name}: terminationGracePeriodSeconds {grace} must exceed the job lease {lease}")
        if values["terminationGracePeriodSeconds"] in ("", None) and grace != lease + 15:
            problem(f"{case}: Deployment {name}: default grace must be the lease + 15 ({lease + 15}), is {grace}")
        ports = {p["name"]: p["containerPort"] for p in main.get("ports", [])}
        probes = {k: main.get(k, {}).get("httpGet", {}) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
        paths = {k: v.get("path") for k, v in probes.items()}
        if paths != {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
            problem(f"{case}: Deployment {name}: probes must be startup+readiness /readyz, liveness /healthz: {paths}")
        probe_ports = {ports.get(v.get("port"), v.get("port")) for v in probes.values()}
        component = d["metadata"]["labels"].get("app.kubernetes.io/component")
        if component == "web":
            if main.get("args") != ["serve"] or probe_ports != {8080} or env.get("INTEGRO_LISTEN") != "0.0.0.0:8080":
                problem(f"{case}: web must `serve` on 0.0.0.0:8080 and be probed there")
            workers = int(env.get("INTEGRO_WORKERS", "-1"))
            if (sqlite and workers <= 0) or (not sqlite and workers != 0):
                problem(f"{case}: web's INTEGRO_WORKERS is {workers}: 0 with PostgreSQL, > 0 with SQLite")
        elif component == "worker":
            if main.get("args") != ["worker"] or probe_ports != {9091} \
                    or env.get("INTEGRO_WORKER_LISTEN") != "0.0.0.0:9091":
                problem(f"{case}: worker must run `worker` with INTEGRO_WORKER_LISTEN=0.0.0.0:9091, probed on 9091")
            if int(env.get("INTEGRO_WORKERS", "0")) <= 0:
                problem(f"{case}: worker's INTEGRO_WORKERS must be > 0")
        else:
            problem(f"{case}: Deployment {name} has no web/worker component label")

    components = {d["metadata"]["labels"].get("app.kubernetes.io/component") for d in deployments.values()}
    jobs = by_kind.get("Job", {})
    if sqlite:
        if components != {"web"}:
            problem(f"{case}: SQLite must render the web Deployment alone, rendered {sorted(components)}")
        web = next(iter(deployments.values()))
        if web["spec"].get("replicas") != 1 or web["spec"]["strategy"]["type"] != "Recreate":
            problem(f"{case}: SQLite's web Deployment must be 1 replica, strategy Recreate")
        spec = web["spec"]["template"]["spec"]
        claims = [v for v in spec["volumes"] if v["name"] == "data" and "persistentVolumeClaim" in v]
        mounted = any(m["mountPath"] == "/data" and m["name"] == "data" for m in spec["containers"][0]["volumeMounts"])
        if not claims or not mounted:
            problem(f"{case}: SQLite's pod must mount a PersistentVolumeClaim at /data")
        elif claims[0]["persistentVolumeClaim"]["claimName"] != values["database"]["persistence"]["existingClaim"] \
                and claims[0]["persistentVolumeClaim"]["claimName"] not in by_kind.get("PersistentVolumeClaim", {}):
            problem(f"{case}: the claim {claims[0]['persistentVolumeClaim']['claimName']} is not rendered")
        if [c.get("args") for c in spec.get("initContainers", [])] != [["migrate"]]:
            problem(f"{case}: SQLite's pod must migrate in an init container")
        if jobs or by_kind.get("HorizontalPodAutoscaler"):
            problem(f"{case}: SQLite must render no Job and no HorizontalPodAutoscaler")
    else:
        if components != {"web", "worker"}:
            problem(f"{case}: PostgreSQL must render web and worker Deployments, rendered {sorted(components)}")
        hooks = [j for j in jobs.values()
                 if j["spec"]["template"]["spec"]["containers"][0].get("args") == ["migrate"]]
        if len(hooks) != 1:
            problem(f"{case}: expected one migration Job, found {len(hooks)}")
        else:
            job = hooks[0]
            ann = job["metadata"].get("annotations", {})
            if set(ann.get("helm.sh/hook", "").split(",")) != {"pre-install", "pre-upgrade"}:
                problem(f"{case}: the migration Job must be a pre-install,pre-upgrade hook")
            if "INTEGRO_DATABASE_URL" not in env_map(job["spec"]["template"]["spec"]["containers"][0]):
                problem(f"{case}: the migration Job has no INTEGRO_DATABASE_URL")
            if job["spec"]["template"]["spec"].get("restartPolicy") != "Never":
                problem(f"{case}: the migration Job must not restart in place")
            job_weight = int(ann.get("helm.sh/hook-weight", "0"))
            for s in by_kind.get("Secret", {}).values():
                sa = s["metadata"].get("annotations", {})
                if "pre-install" not in sa.get("helm.sh/hook", "") or int(sa.get("helm.sh/hook-weight", "0")) >= job_weight:
                    problem(f"{case}: the chart's Secret must be a hook created before the migration Job")
    secrets = by_kind.get("Secret", {})
    if values.get("existingSecret"):
        if secrets:
            problem(f"{case}: existingSecret is set, yet the chart renders Secrets {sorted(secrets)}")
    else:
        if set(secrets) != {secret_name}:
            problem(f"{case}: expected the chart's Secret {secret_name}, rendered {sorted(secrets)}")
        for s in secrets.values():
            key = base64.b64decode(base64.b64decode(s["data"][values["secretKeys"]["masterKey"]]))
            if len(key) != 32:
                problem(f"{case}: the Secret's master key is not 32 bytes")

    for kind in ("HorizontalPodAutoscaler",):
        for name, h in by_kind.get(kind, {}).items():
            target = h["spec"]["scaleTargetRef"]["name"]
            if target not in deployments:
                problem(f"{case}: HPA {name} scales {target}, which is not rendered")
            elif "replicas" in deployments[target]["spec"]:
                problem(f"{case}: Deployment {target} sets replicas although HPA {name} owns them")
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for kind, path in (("Service", ("spec", "selector")), ("PodDisruptionBudget", ("spec", "selector", "matchLabels"))):
        for name, obj in by_kind.get(kind, {}).items():
            sel = obj
            for p in path:
                sel = sel[p]
            if not any(all(labels.get(k) == v for k, v in sel.items()) for labels in pod_labels):
                problem(f"{case}: {kind} {name} selects no rendered pod")
    for name, ing in by_kind.get("Ingress", {}).items():
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]
                if svc["name"] not in by_kind.get("Service", {}):
                    problem(f"{case}: Ingress {name} routes to {svc['name']}, which is not rendered")
                elif svc["port"]["number"] not in [sp["port"] for sp in by_kind["Service"][svc["name"]]["spec"]["ports"]]:
                    problem(f"{case}: Ingress {name} routes to a port {svc['name']} does not have")
    for d in deployments.values():
        if not d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items():
            problem(f"{case}: Deployment {d['metadata']['name']}'s selector does not match its pods")


def render(chart, values: dict, upgrade: bool = False) -> dict[str, str]:
    return chart.render(values, name="integro", namespace="integro",
                        is_install=not upgrade, is_upgrade=upgrade)


def check_helm(kube_versions: list[str]) -> None:
    import helm_python as helm
    import kubernetes_validate.utils as kv

    print(f"deploy: Helm chart (Helm SDK {helm.helm_sdk_version()} via helm-python-sdk), "
          f"manifests against Kubernetes {', '.join(kube_versions)} (strict schemas)")
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))["workspace"]["package"]["version"]
    if str(chart_meta.get("appVersion")) != workspace:
        problem(f"Chart.yaml appVersion {chart_meta.get('appVersion')} is not the workspace's version {workspace}")
    defaults = chart_values()
    if defaults["secret"]["masterKey"] or defaults["secret"]["databaseUrl"] or defaults["existingSecret"]:
        problem("values.yaml must give no default secret (secret.masterKey, secret.databaseUrl, existingSecret)")
    scale_out = yaml.safe_load((CHART / "values-scale-out.yaml").read_text(encoding="utf-8"))

    secret = {"secret": {"masterKey": TEST_KEY, "databaseUrl": TEST_URL}}
    sqlite = {"database": {"kind": "sqlite"}, "web": {"replicas": 1}, "worker": {"replicas": 0}}
    renders = [
        ("defaults (+ the required secret values)", secret, ["Job", "Secret", "Service", "PodDisruptionBudget"]),
        ("values-scale-out.yaml", scale_out, ["Ingress", "HorizontalPodAutoscaler"]),
        ("sqlite (1 web pod, no workers)", merge(sqlite, {"secret": {"masterKey": TEST_KEY}}), ["PersistentVolumeClaim"]),
        ("sqlite with existingSecret and an existing claim",
         merge(sqlite, {"existingSecret": "integro", "database": {"persistence": {"existingClaim": "data"}}}), []),
    ]
    refusals = [
        ("chart defaults alone (no secret)", {}, "set existingSecret"),
        ("sqlite with web.replicas=2", merge(sqlite, {"web": {"replicas": 2}, "existingSecret": "s"}),
         "web.replicas must be 1"),
        ("sqlite with worker.replicas=2", merge(sqlite, {"worker": {"replicas": 2}, "existingSecret": "s"}),
         "worker.replicas must be 0"),
        ("sqlite with autoscaling", merge(sqlite, {"web": {"autoscaling": {"enabled": True}}, "existingSecret": "s"}),
         "cannot autoscale"),
        ("database.kind=mysql", {"database": {"kind": "mysql"}, "existingSecret": "s"}, "postgres or sqlite"),
        ("a master key of 16 bytes", {"secret": {"masterKey": base64.b64encode(b"x" * 16).decode(),
                                                 "databaseUrl": TEST_URL}}, "base64 of 32 bytes"),
        ("postgres with worker.replicas=0", {"worker": {"replicas": 0}, "existingSecret": "s"},
         "worker.replicas must be at least 1"),
        ("postgres without a database URL", {"secret": {"masterKey": TEST_KEY}}, "needs the database URL"),
    ]
    with helm.Chart.load(str(CHART)) as chart:
        for case, values, must_have in renders:
            effective = merge(defaults, values)
            try:
                manifests = render(chart, values)
                render(chart, values, upgrade=True)
            except Exception as e:
                problem(f"{case}: the chart does not render: {e}")
                continue
            docs = []
            for path, text in sorted(manifests.items()):
                if path.endswith("NOTES.txt"):
                    continue
                try:
                    docs.extend(d for d in yaml.safe_load_all(text) if d)
                except yaml.YAMLError as e:
                    problem(f"{case}: {path} is not YAML: {e}")
            invalid = 0
            for d in docs:
                for version in kube_versions:
                    try:
                        kv.validate(d, version, strict=True)
                    except kv.ValidationError as e:
                        invalid += 1
                        at = ".".join(str(p) for p in e.path)
                        problem(f"{case}: {d['kind']}/{d['metadata']['name']} is invalid for Kubernetes "
                                f"{version}: {at}: {e.message}")
                    except kv.SchemaNotFoundError as e:
                        invalid += 1
                        problem(f"{case}: {d.get('kind')} {d.get('apiVersion')} has no schema in Kubernetes {version}: {e}")
            kinds = sorted({d["kind"] for d in docs})
            for kind in must_have:
                if kind not in kinds:
                    problem(f"{case}: renders no {kind}")
            before = len(problems)
            check_manifests(case, docs, effective)
            if not invalid and len(problems) == before:
                ok(f"{case}: {len(docs)} manifests ({', '.join(kinds)}) valid and as intended")
            lint = helm.lint(str(CHART), values, strict=True, kube_version="v" + kube_versions[0])
            findings = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + \
                [{"path": "", "error": e} for e in lint.get("errors", [])]
            for m in findings:
                problem(f"{case}: helm lint: {m.get('path')}: {m.get('error')}")
        for case, values, message in refusals:
            try:
                render(chart, values)
            except Exception as e:
                if message in str(e):
                    ok(f"refused as it must be: {case} ({message})")
                else:
                    problem(f"{case}: refused, but not with `{message}`: {e}")
            else:
                problem(f"{case}: the chart rendered; it must refuse ({message})")
    finish("Helm chart")


# --------------------------------------------------------------------------
# Prometheus rules.

DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
TEMPLATE = re.compile(r"{{(.*?)}}")
TEMPLATE_OK = re.compile(r"^\s*\$(labels\.[a-zA-Z_][a-zA-Z0-9_]*|value)"
                         r"(\s*\|\s*(humanize|humanize1024|humanizeDuration|humanizePercentage|humanizeTimestamp))?\s*$")
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def check_alerts() -> None:
    path = DEPLOY / "prometheus" / "alerts.yaml"
    print(f"deploy: Prometheus rules ({path.relative_to(ROOT)})")
    series = series_names(exported_metrics())
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or set(doc) != {"groups"} or not doc["groups"]:
        problem("the file must be a mapping with one key, groups, listing at least one group")
        finish("alerts")
    names: set[str] = set()
    used: set[str] = set()
    count = 0
    for g in doc["groups"]:
        if not g.get("name") or not isinstance(g.get("rules"), list) or not g["rules"]:
            problem(f"group {g.get('name')!r} needs a name and rules")
            continue
        for r in g["rules"]:
            count += 1
            name = r.get("alert")
            where = f"alert {name}"
            if not name or not re.match(r"^[A-Z][A-Za-z0-9]+$", str(name)):
                problem(f"{where}: every rule is an alert with a CamelCase name (recording rules are not expected)")
            if name in names:
                problem(f"{where}: the name is used twice")
            names.add(name)
            if set(r) - RULE_KEYS:
                problem(f"{where}: unknown keys {sorted(set(r) - RULE_KEYS)}")
            if not DURATION.match(str(r.get("for", ""))):
                problem(f"{where}: `for` must be a duration such as 5m, is {r.get('for')!r}")
            labels = r.get("labels") or {}
            if labels.get("severity") not in ("critical", "warning", "info"):
                problem(f"{where}: labels.severity must be critical, warning or info")
            annotations = r.get("annotations") or {}
            if not str(annotations.get("summary", "")).strip():
                problem(f"{where}: annotations.summary is missing")
            for key, text in annotations.items():
                if str(text).count("{{") != str(text).count("}}"):
                    problem(f"{where}: annotations.{key}: unbalanced {{{{ }}}}")
                for inner in TEMPLATE.findall(str(text)):
                    if not TEMPLATE_OK.match(inner):
                        problem(f"{where}: annotations.{key}: template {{{{{inner}}}}} is not $labels.x or $value "
                                "(optionally | humanize...)")
            found, metrics = promql_problems(str(r.get("expr", "")), series, where)
            for f in found:
                problem(f)
            used |= metrics
    required = {
        "integro_oldest_ready_job_age_seconds": "oldest ready job too old",
        "integro_jobs": "dead jobs",
        "integro_circuit_open": "a provider's circuit open",
        "integro_job_duration_seconds": "reply latency (job duration p99)",
        "integro_webhook_refusals_throttled_total": "webhook refusals",
        "up": "process down",
    }
    for metric, topic in required.items():
        if metric not in used:
            problem(f"no alert on {topic} ({metric})")
    if not problems:
        ok(f"{count} alerts in {len(doc['groups'])} group(s): PromQL parses, known metrics only, shared-queue "
           "gauges under max, for/labels.severity/annotations.summary present")
    finish("alerts")


# --------------------------------------------------------------------------
# Grafana dashboard.

GRAFANA_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def substitute(expr: str, variables: set[str], where: str) -> str:
    def one(m):
        name = m.group(1) or m.group(2)
        if name in GRAFANA_VARS:
            return GRAFANA_VARS[name]
        if name not in variables:
            problem(f"{where}: ${name} is no dashboard variable")
        return ".*"
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


def check_dashboard() -> None:
    path = DEPLOY / "grafana" / "integro.json"
    print(f"deploy: Grafana dashboard ({path.relative_to(ROOT)})")
    metrics = exported_metrics()
    series = series_names(metrics)
    try:
        dash = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        problem(f"not JSON: {e}")
        finish("dashboard")
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dash:
            problem(f"the dashboard has no {key}")
    variables = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in dash.get("templating", {}).get("list", [])):
        problem("no Prometheus datasource variable")
    used: set[str] = set()
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
            m = re.match(r"^label_values\((.*),\s*(\w+)\)$", q)
            if not m:
                problem(f"variable {v['name']}: expected label_values(selector, label), got {q}")
                continue
            found, _ = promql_problems(m.group(1), series, f"variable {v['name']}", aggregated=False)
            for f in found:
                problem(f)
    ids: set[int] = set()
    count = 0
    for p in dash.get("panels", []):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            problem(f"{where}: id used twice")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            problem(f"{where}: gridPos must have integer h, w, x, y within 24 columns")
        if p.get("type") == "row":
            continue
        count += 1
        if not p.get("title") or not p.get("type"):
            problem(f"{where}: needs a title and a type")
        uid = (p.get("datasource") or {}).get("uid", "")
        if uid.strip("${}") not in variables:
            problem(f"{where}: datasource {uid} is not the dashboard's datasource variable")
        targets = p.get("targets") or []
        if not targets:
            problem(f"{where}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problem(f"{where}: refIds repeat")
        for t in targets:
            expr = substitute(t.get("expr", ""), variables, where)
            found, names = promql_problems(expr, series, where)
            for f in found:
                problem(f)
            used |= names
    missing = sorted(set(metrics) - used)
    if not problems:
        ok(f"{count} panels: queries parse, name only exported metrics (or up), shared-queue gauges under max")
    if missing:
        print(f"  note exported metrics no panel shows: {', '.join(missing)}")
    finish("dashboard")


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    command, args = argv[0], argv[1:]
    if command == "dockerfile":
        check_dockerfile()
    elif command == "compose" and len(args) == 2:
        check_compose(*args)
    elif command == "helm" and args:
        check_helm(args)
    elif command == "alerts":
        check_alerts()
    elif command == "dashboard":
        check_dashboard()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
