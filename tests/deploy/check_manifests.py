#!/usr/bin/env python3
"""Checks rendered pbft-ledger Kubernetes manifests (`kubectl kustomize` of a
deploy/k8s overlay) offline:

1. every object against the Kubernetes JSON schema committed in
   deploy/k8s/schema (generated from kubernetes-types), with Debian's
   python3-jsonschema;
2. the house rules a schema cannot see (docs/operations.md, "What the tests
   check"), cross-checked against the cluster.json in the rendered ConfigMap.

Every problem is printed as "[rule] object: message"; exit status 1 if there
is any. `--sources DIR` also lints the kustomization files under DIR.

  check_manifests.py --schema SCHEMA.json RENDERED.yaml [--sources DIR]
"""
import argparse
import base64
import json
import os
import re
import sys

import jsonschema
import yaml

NAME_LABEL = "app.kubernetes.io/name"
APP = "pbft-ledger"
REPLICA_LABEL = "pbft-ledger/replica"
READY_SERVICE = "pbft-ledger.ready"
SELECTOR_KEYS = {NAME_LABEL, REPLICA_LABEL}
CLUSTER_SCOPED = {"Namespace"}


class Checker:
    def __init__(self, schema):
        self.schema = schema
        self.problems = []

    def fail(self, rule, obj, message):
        self.problems.append(f"[{rule}] {obj}: {message}")

    # -- 1. schema ---------------------------------------------------------

    def check_schema(self, objects):
        kinds = self.schema["x-kinds"]
        for o in objects:
            key = f"{o.get('apiVersion')}/{o.get('kind')}"
            if key not in kinds:
                self.fail("schema", ident(o),
                          f"no schema for {key}: add the kind to "
                          "deploy/k8s/schema/generate.sh")
                continue
            sub = {"$ref": kinds[key], "definitions": self.schema["definitions"]}
            validator = jsonschema.Draft7Validator(sub)
            for e in sorted(validator.iter_errors(o), key=lambda e: list(e.path)):
                path = "/".join(str(p) for p in e.absolute_path)
                self.fail("schema", ident(o), f"at /{path}: {short(e)}")

    # -- 2. house rules ----------------------------------------------------

    def check_rules(self, objects):
        by_kind = {}
        for o in objects:
            by_kind.setdefault(o.get("kind"), []).append(o)
        namespaces = set()
        for o in objects:
            meta = o.get("metadata") or {}
            if not meta.get("name"):
                self.fail("metadata", ident(o), "metadata.name is missing")
            if o.get("kind") not in CLUSTER_SCOPED:
                if not meta.get("namespace"):
                    self.fail("metadata", ident(o), "metadata.namespace is missing")
                namespaces.add(meta.get("namespace"))
        if len(namespaces) > 1:
            self.fail("metadata", "overlay",
                      f"objects in several namespaces: {sorted(map(str, namespaces))}")
        namespace = next(iter(namespaces)) if len(namespaces) == 1 else None

        config = self.cluster_config(by_kind.get("ConfigMap", []))
        if config is None:
            return
        n = len(config.get("replicas", []))
        f = int(config.get("f", 0))
        if n < 3 * f + 1:
            self.fail("config", "cluster.json", f"n={n} and f={f}: need n >= 3f+1")

        secrets = {o["metadata"]["name"]: o for o in by_kind.get("Secret", [])}
        services = by_kind.get("Service", [])
        sets = by_kind.get("StatefulSet", [])
        if not sets:
            self.fail("statefulset", "overlay", "no StatefulSet")
        replica_of = {}  # StatefulSet name -> replica id
        secret_users = {}  # Secret name -> StatefulSet names
        for s in sets:
            i = self.check_statefulset(s, config, secrets, services, namespace,
                                       secret_users)
            if i is not None:
                if i in replica_of.values():
                    self.fail("statefulset", ident(s),
                              f"replica {i} is run by another StatefulSet too")
                replica_of[s["metadata"]["name"]] = i
        for name, users in sorted(secret_users.items()):
            if len(users) > 1:
                self.fail("secret", f"Secret/{name}",
                          f"mounted by several StatefulSets: {sorted(users)} "
                          "(each replica's key and TLS Secrets are its own)")
        self.check_selectors_disjoint(sets)
        for svc in services:
            self.check_service(svc, sets)
        self.check_pdb(by_kind.get("PodDisruptionBudget", []), sets, f)
        self.check_network_policy(by_kind.get("NetworkPolicy", []), sets, config,
                                  replica_of)

    def cluster_config(self, configmaps):
        found = [(c, c["data"]["cluster.json"]) for c in configmaps
                 if "cluster.json" in (c.get("data") or {})]
        if len(found) != 1:
            self.fail("config", "overlay",
                      f"want exactly one ConfigMap with cluster.json, found {len(found)}")
            return None
        try:
            return json.loads(found[0][1])
        except ValueError as e:
            self.fail("config", ident(found[0][0]), f"cluster.json: {e}")
            return None

    def check_statefulset(self, s, config, secrets, services, namespace,
                          secret_users):
        who = ident(s)
        spec = s.get("spec") or {}
        tmpl = spec.get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        pod = tmpl.get("spec") or {}
        if spec.get("replicas") != 1:
            self.fail("statefulset", who,
                      f"replicas is {spec.get('replicas')}; want 1 (one StatefulSet "
                      "per replica, so no pod mounts another replica's key)")

        # Identity: the replica label, the name, the --id.
        raw = labels.get(REPLICA_LABEL)
        if raw is None or not re.fullmatch(r"0|[1-9][0-9]*", str(raw)):
            self.fail("statefulset", who,
                      f"pod template has no numeric {REPLICA_LABEL} label")
            return None
        i = int(raw)
        replicas = config.get("replicas", [])
        if i >= len(replicas):
            self.fail("statefulset", who, f"replica {i} is not in cluster.json")
            return None
        rc = replicas[i]
        if s["metadata"].get("name") != f"ledger-{i}":
            self.fail("statefulset", who, f"replica {i}'s StatefulSet must be ledger-{i}")

        # Selector: exactly the name and replica labels, matching the template.
        sel = spec.get("selector") or {}
        ml = sel.get("matchLabels") or {}
        if sel.get("matchExpressions"):
            self.fail("selector", who, "selector has matchExpressions")
        if set(ml) != SELECTOR_KEYS:
            self.fail("selector", who,
                      f"selector labels {sorted(ml)}; want exactly {sorted(SELECTOR_KEYS)} "
                      "(selectors are immutable: a label added by commonLabels or "
                      "includeSelectors breaks upgrades)")
        for k, v in ml.items():
            if labels.get(k) != v:
                self.fail("selector", who,
                          f"selector {k}={v} does not match the pod template's labels")
        if ml.get(NAME_LABEL) != APP:
            self.fail("selector", who, f"selector {NAME_LABEL} must be {APP}")

        containers = pod.get("containers") or []
        inits = pod.get("initContainers") or []
        main = [c for c in containers if c.get("name") == "ledgerd"]
        if len(main) != 1:
            self.fail("statefulset", who, "want one container named ledgerd")
            return i
        c = main[0]
        args = parse_args(c.get("args") or [])
        self.check_id(who, c, args, i)

        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        claims = {t.get("metadata", {}).get("name"): t
                  for t in spec.get("volumeClaimTemplates") or []}
        mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}

        # Secrets: one key Secret holding replica i's key, one TLS Secret;
        # 0400; not shared (collected in secret_users).
        key_vols, tls_vols = [], []
        for v in volumes.values():
            sec = v.get("secret")
            if sec is None:
                if v.get("projected"):
                    self.fail("secret", who, f"volume {v.get('name')}: use secret volumes, "
                              "not projected ones, for keys")
                continue
            name = sec.get("secretName")
            secret_users.setdefault(name, set()).add(s["metadata"]["name"])
            mode = sec.get("defaultMode")
            if mode is None or mode & 0o077:
                self.fail("secret", who,
                          f"volume {v.get('name')}: defaultMode {oct(mode) if mode else 'unset'};"
                          " want 0400")
            for item in sec.get("items") or []:
                if item.get("mode") is not None and item["mode"] & 0o077:
                    self.fail("secret", who, f"volume {v.get('name')}: item mode too open")
            obj = secrets.get(name)
            if obj is None:
                self.fail("secret", who, f"volume {v.get('name')}: Secret {name} is not "
                          "in the overlay")
                continue
            data = obj.get("data") or {}
            if "replica.key" in data:
                key_vols.append((v, obj))
            elif obj.get("type") == "kubernetes.io/tls":
                tls_vols.append((v, obj))
        if len(key_vols) != 1:
            self.fail("secret", who, f"mounts {len(key_vols)} key Secrets; want exactly one")
        for v, obj in key_vols:
            if not obj["metadata"]["name"].startswith(f"ledger-{i}-key"):
                self.fail("secret", who, f"replica {i} mounts key Secret "
                          f"{obj['metadata']['name']}; want ledger-{i}-key")
            pub = key_public(obj["data"]["replica.key"])
            if pub != rc.get("public_key"):
                self.fail("secret", who, f"the key in Secret {obj['metadata']['name']} "
                          f"is not replica {i}'s (public key {pub} vs cluster.json "
                          f"{rc.get('public_key')})")
            if v.get("name") in {m.get("name") for m in c.get("volumeMounts") or []}:
                self.fail("secret", who, "ledgerd mounts the key Secret itself; it "
                          "refuses the group-readable file fsGroup makes: mount it "
                          "in the install-key init container only")
        key_arg = args.get("key")
        if not key_arg or not under_mount(key_arg, mounts):
            self.fail("secret", who, f"--key={key_arg} is not under a mounted volume")
        if not any(key_arg and os.path.dirname(key_arg) == m.get("mountPath")
                   for ic in inits for m in ic.get("volumeMounts") or []):
            self.fail("secret", who, f"no init container installs --key={key_arg}")

        tls = config.get("tls") or {}
        if tls:
            if len(tls_vols) != 1:
                self.fail("secret", who, f"mounts {len(tls_vols)} TLS Secrets; want one")
            for v, obj in tls_vols:
                if not obj["metadata"]["name"].startswith(f"ledger-{i}-tls"):
                    self.fail("secret", who, f"replica {i} mounts TLS Secret "
                              f"{obj['metadata']['name']}; want ledger-{i}-tls")
                for field in ("ca_file", "cert_file", "key_file"):
                    path = tls.get(field, "")
                    if mounts.get(os.path.dirname(path)) != v.get("name"):
                        self.fail("secret", who, f"tls.{field} {path} is not in the "
                                  f"mounted TLS Secret volume {v.get('name')}")
                    elif os.path.basename(path) not in (obj.get("data") or {}):
                        self.fail("secret", who, f"tls.{field}: {os.path.basename(path)}"
                                  f" is not in Secret {obj['metadata']['name']}")

        # Config and data.
        cfg = args.get("config", "")
        cfg_vol = volumes.get(mounts.get(os.path.dirname(cfg)), {})
        if "configMap" not in cfg_vol:
            self.fail("config", who, f"--config={cfg} is not in a mounted ConfigMap")
        data_dir = args.get("data-dir", "")
        data_vol = mounts.get(data_dir) or mounts.get(os.path.dirname(data_dir))
        if data_vol not in claims:
            self.fail("storage", who, f"--data-dir={data_dir} is not on a "
                      "volumeClaimTemplates volume (persistent, one per replica)")
        else:
            t = claims[data_vol].get("spec") or {}
            if t.get("accessModes") != ["ReadWriteOnce"] and t.get("accessModes") != ["ReadWriteOncePod"]:
                self.fail("storage", who, "data volume must be ReadWriteOnce(Pod)")
            if not ((t.get("resources") or {}).get("requests") or {}).get("storage"):
                self.fail("storage", who, "data volume has no storage request")
        if args.get("listen-host") != "0.0.0.0":
            self.fail("statefulset", who, "--listen-host=0.0.0.0 is required in a pod")

        # Ports and probes against cluster.json.
        api_port = port_of(rc.get("address", ""))
        health_port = port_of(rc.get("health_address", ""))
        metrics_port = port_of(rc.get("metrics_address", ""))
        cports = {p.get("containerPort") for p in c.get("ports") or []}
        for what, p in (("address", api_port), ("health_address", health_port),
                        ("metrics_address", metrics_port)):
            if p is None:
                self.fail("ports", who, f"cluster.json replicas[{i}].{what} has no port")
            elif p not in cports:
                self.fail("ports", who, f"container does not expose replicas[{i}].{what} "
                          f"port {p}")
        self.check_probes(who, c, health_port)

        self.check_security(who, pod, containers + inits)
        for ctr in containers + inits:
            res = ctr.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        self.fail("resources", who,
                                  f"container {ctr.get('name')}: no {kind}.{r}")
            image = ctr.get("image", "")
            if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1]
                                            or image.endswith(":latest")):
                self.fail("image", who, f"container {ctr.get('name')}: image {image!r} "
                          "is not pinned to a tag or digest")
        self.check_spread(who, pod)

        # Headless Service and DNS name.
        svc_name = spec.get("serviceName")
        svc = [v for v in services if v["metadata"]["name"] == svc_name]
        if not svc:
            self.fail("service", who, f"serviceName {svc_name} is not in the overlay")
        else:
            if (svc[0].get("spec") or {}).get("clusterIP") != "None":
                self.fail("service", who, f"Service {svc_name} must be headless")
        host = rc.get("address", "").rsplit(":", 1)[0]
        if ".svc." in host:
            parts = host.split(".")
            if parts[0] != svc_name or parts[1] != namespace:
                self.fail("address", who, f"cluster.json replicas[{i}].address {host} is "
                          f"not this replica's Service {svc_name}.{namespace}.svc")
        else:
            exposed = any(
                (v.get("spec") or {}).get("type") in ("LoadBalancer", "NodePort")
                and selects((v.get("spec") or {}).get("selector"), labels)
                and api_port in {p.get("port") for p in (v.get("spec") or {}).get("ports") or []}
                for v in services)
            if not exposed:
                self.fail("address", who, f"replicas[{i}].address {host} is outside the "
                          "cluster but no LoadBalancer/NodePort Service exposes port "
                          f"{api_port} of this replica")
        return i

    def check_id(self, who, c, args, i):
        id_arg = args.get("id")
        env = {e.get("name"): e for e in c.get("env") or []}
        m = re.fullmatch(r"\$\((\w+)\)", id_arg or "")
        if m:
            e = env.get(m.group(1), {})
            path = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if path != f"metadata.labels['{REPLICA_LABEL}']" and e.get("value") != str(i):
                self.fail("statefulset", who, f"--id comes from ${m.group(1)}, which is "
                          f"neither the {REPLICA_LABEL} label nor {i}")
        elif id_arg != str(i):
            self.fail("statefulset", who, f"--id={id_arg}; replica label says {i}")

    def check_probes(self, who, c, health_port):
        probes = {k: c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        for k, p in probes.items():
            if not p:
                self.fail("probe", who, f"no {k}")
                continue
            g = p.get("grpc")
            if g is None:
                self.fail("probe", who, f"{k} is not a native grpc probe")
                continue
            if g.get("port") != health_port:
                self.fail("probe", who, f"{k} on port {g.get('port')}; the plaintext "
                          f"health port is {health_port}")
            service = g.get("service", "")
            if k == "readinessProbe":
                if service != READY_SERVICE:
                    self.fail("probe", who, f"readinessProbe asks for {service!r}; want "
                              f"{READY_SERVICE!r} (caught up with the cluster)")
            elif service != "":
                self.fail("probe", who, f"{k} asks for {service!r}; want \"\" (process "
                          "up): liveness must never depend on quorum")

    def check_security(self, who, pod, containers):
        psc = pod.get("securityContext") or {}
        for k in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(k):
                self.fail("security", who, f"{k} is set")
        if pod.get("automountServiceAccountToken") is not False:
            self.fail("security", who, "automountServiceAccountToken must be false")
        if psc.get("runAsUser") == 0 or psc.get("runAsGroup") == 0:
            self.fail("security", who, "pod runs as root")
        pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
        for ctr in containers:
            name = f"container {ctr.get('name')}"
            sc = ctr.get("securityContext") or {}
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                self.fail("security", who, f"{name}: runAsNonRoot is not true")
            if sc.get("runAsUser", psc.get("runAsUser")) in (0, None):
                self.fail("security", who, f"{name}: runAsUser is root or unset")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.fail("security", who, f"{name}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                self.fail("security", who, f"{name}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                self.fail("security", who, f"{name}: privileged")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                self.fail("security", who, f"{name}: capabilities do not drop ALL")
            if caps.get("add"):
                self.fail("security", who, f"{name}: adds capabilities {caps['add']}")
            seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
            if seccomp not in ("RuntimeDefault", "Localhost"):
                self.fail("security", who, f"{name}: seccompProfile is {seccomp}; want "
                          "RuntimeDefault")

    def check_spread(self, who, pod):
        anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {})
        terms = [t.get("podAffinityTerm", t) for t in
                 (anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []) +
                 (anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])]
        spread = pod.get("topologySpreadConstraints") or []
        if not terms and not spread:
            self.fail("affinity", who, "neither pod anti-affinity nor topology spread")
        for what, sel in [("anti-affinity", t.get("labelSelector")) for t in terms] + \
                         [("topology spread", t.get("labelSelector")) for t in spread]:
            ml = (sel or {}).get("matchLabels") or {}
            if ml != {NAME_LABEL: APP} or (sel or {}).get("matchExpressions"):
                self.fail("affinity", who, f"{what} selector {ml} must select every "
                          f"replica ({NAME_LABEL}={APP} only), not just this one")

    def check_selectors_disjoint(self, sets):
        for a in sets:
            for b in sets:
                if a is b:
                    continue
                sel = ((a.get("spec") or {}).get("selector") or {}).get("matchLabels")
                lb = (((b.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
                if selects(sel, lb):
                    self.fail("selector", ident(a), f"its selector also matches the "
                              f"pods of {ident(b)}")

    def check_service(self, svc, sets):
        spec = svc.get("spec") or {}
        sel = spec.get("selector")
        matched = [s for s in sets if selects(sel, pod_labels(s))]
        if not matched:
            self.fail("service", ident(svc), f"selector {sel} matches no replica pod")
            return
        if spec.get("publishNotReadyAddresses") is not True:
            self.fail("service", ident(svc), "publishNotReadyAddresses must be true: a "
                      "replica catching up (not ready) must stay reachable by its peers")
        if len(matched) > 1:
            self.fail("service", ident(svc), "selects several replicas; replica "
                      "Services address exactly one")

    def check_pdb(self, pdbs, sets, f):
        if len(pdbs) != 1:
            self.fail("pdb", "overlay", f"want one PodDisruptionBudget, found {len(pdbs)}")
            return
        p = pdbs[0]
        spec = p.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels")
        for s in sets:
            if not selects(sel, pod_labels(s)):
                self.fail("pdb", ident(p), f"does not cover {ident(s)}")
        mu = spec.get("maxUnavailable")
        if "minAvailable" in spec or not isinstance(mu, int):
            self.fail("pdb", ident(p), "use an integer maxUnavailable (at most f)")
        elif not 1 <= mu <= f:
            self.fail("pdb", ident(p), f"maxUnavailable {mu} is not in 1..f={f}: more "
                      "than f replicas down loses the quorum")

    def check_network_policy(self, policies, sets, config, replica_of):
        for s in sets:
            labels = pod_labels(s)
            mine = [p for p in policies
                    if selects(((p.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}, labels)]
            if not mine:
                self.fail("network", ident(s), "no NetworkPolicy selects its pods")
                continue
            i = replica_of.get(s["metadata"]["name"])
            if i is None:
                continue
            rc = config["replicas"][i]
            allowed = set()
            for p in mine:
                if "Ingress" not in ((p.get("spec") or {}).get("policyTypes") or []):
                    self.fail("network", ident(p), "policyTypes lacks Ingress")
                for rule in (p.get("spec") or {}).get("ingress") or []:
                    if not rule.get("from"):
                        self.fail("network", ident(p), "an ingress rule allows everyone")
                    for port in rule.get("ports") or []:
                        allowed.add(port.get("port"))
            for what in ("address", "health_address", "metrics_address"):
                port = port_of(rc.get(what, ""))
                if port not in allowed:
                    self.fail("network", ident(s), f"no ingress rule for port {port} "
                              f"(replicas[{i}].{what})")

    # -- sources -----------------------------------------------------------

    def lint_sources(self, root):
        for d, _, files in os.walk(root):
            for fn in files:
                if fn not in ("kustomization.yaml", "kustomization.yml"):
                    continue
                path = os.path.join(d, fn)
                k = yaml.safe_load(open(path)) or {}
                if "commonLabels" in k:
                    self.fail("selector", path, "commonLabels rewrites selectors "
                              "(immutable): use labels: with includeSelectors: false")
                for entry in k.get("labels") or []:
                    if entry.get("includeSelectors"):
                        self.fail("selector", path, "labels with includeSelectors: "
                                  "true also rewrites the anti-affinity, spread and PDB "
                                  "selectors")


def ident(o):
    return f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"


def short(e):
    msg = e.message
    return msg if len(msg) < 300 else msg[:300] + "..."


def parse_args(args):
    out = {}
    for a in args:
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
            out[k] = v
    return out


def under_mount(path, mounts):
    return any(path.startswith(m.rstrip("/") + "/") for m in mounts)


def port_of(address):
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def selects(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def pod_labels(s):
    return (((s.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def key_public(b64):
    try:
        text = base64.b64decode(b64).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if line.startswith("public_key:"):
            return line.split(":", 1)[1].strip()
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schema", required=True)
    ap.add_argument("--sources", help="lint the kustomization files under DIR")
    ap.add_argument("rendered")
    a = ap.parse_args()
    checker = Checker(json.load(open(a.schema)))
    objects = [o for o in yaml.safe_load_all(open(a.rendered)) if o]
    if not objects:
        checker.fail("render", a.rendered, "no objects")
    checker.check_schema(objects)
    checker.check_rules(objects)
    if a.sources:
        checker.lint_sources(a.sources)
    for p in checker.problems:
        print(p)
    kinds = sorted({o.get("kind") for o in objects})
    print(f"check_manifests: {a.rendered}: {len(objects)} objects ({', '.join(kinds)}), "
          f"{len(checker.problems)} problems")
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main())
