"""What a kubelet would do with one pod of a rendered StatefulSet, as podman
arguments and files. Used by pods_test.py; no podman calls here.

Every field of the pod spec is either carried out, checked, or listed in
IGNORED with the reason; a field not known here fails the test, so a new
manifest setting cannot go untried without someone deciding how."""
import base64
import os
import re

# Pod and container fields with no podman equivalent on one host, and why
# skipping them does not change what the replica sees.
IGNORED_POD = {
    "serviceAccountName": "no API server; automountServiceAccountToken is false anyway",
    "automountServiceAccountToken": "checked false: nothing to mount",
    "enableServiceLinks": "checked false: no service env variables to inject",
    "affinity": "scheduling across nodes: one host here",
    "topologySpreadConstraints": "scheduling across zones: one host here",
    "fsGroupChangePolicy": "volumes are fresh: ownership is set once",
}
KNOWN_POD = {"securityContext", "initContainers", "containers", "volumes",
             "terminationGracePeriodSeconds"} | set(IGNORED_POD)
KNOWN_CONTAINER = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports",
                   "startupProbe", "livenessProbe", "readinessProbe", "resources",
                   "securityContext", "volumeMounts"}
KNOWN_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem",
                  "allowPrivilegeEscalation", "privileged", "capabilities", "seccompProfile"}
# The kubelet's masks for volume ownership under fsGroup (pkg/volume
# SetVolumeOwnership): read-only volumes (Secret, ConfigMap) get group read,
# writable ones group read-write, directories setgid + group execute.
RO_MASK, RW_MASK, EXEC_MASK = 0o440, 0o660, 0o110


class SpecError(Exception):
    """The manifest asks for something this harness cannot do faithfully."""


def parse_quantity_cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def parse_quantity_bytes(q):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        raise SpecError(f"quantity {q}: not understood")
    return int(m.group(1)) * units.get(m.group(2), 1)


def check_known(where, got, known):
    unknown = sorted(set(got) - known)
    if unknown:
        raise SpecError(f"{where}: fields {unknown} are not handled by the container test")


def expand(text, env):
    """The kubelet's $(VAR) expansion of command and args; $$ escapes."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


def field_ref(path, meta):
    m = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
    if m:
        if m.group(1) not in meta.get("labels", {}):
            raise SpecError(f"fieldRef {path}: the pod has no such label")
        return meta["labels"][m.group(1)]
    if path in ("metadata.name", "metadata.namespace"):
        return meta[path.split(".")[1]]
    raise SpecError(f"fieldRef {path}: not handled")


def container_env(c, meta):
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = field_ref(e["valueFrom"]["fieldRef"]["fieldPath"], meta)
        else:
            raise SpecError(f"env {e['name']}: only value and fieldRef are handled")
    return env


def write_items(directory, data, mode, gid):
    """Files of a Secret or ConfigMap volume, as the kubelet leaves them."""
    os.makedirs(directory, exist_ok=True)
    dir_mode = 0o755
    if gid is not None:
        mode |= RO_MASK
        dir_mode |= RO_MASK | EXEC_MASK | 0o2000
    for name, content in data.items():
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
        if gid is not None:
            os.chown(path, 0, gid)
    os.chmod(directory, dir_mode)
    if gid is not None:
        os.chown(directory, 0, gid)


def make_writable_dir(directory, base_mode, gid):
    os.makedirs(directory, exist_ok=True)
    mode = base_mode
    if gid is not None:
        mode |= RW_MASK | EXEC_MASK | 0o2000
        os.chown(directory, 0, gid)
    os.chmod(directory, mode)


def lookup(objects, kind, name):
    for o in objects:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise SpecError(f"{kind} {name} is referenced but not in the rendered manifests")


def volume_data(objects, v):
    """(data as {file: bytes}, defaultMode) of a configMap or secret volume."""
    if "configMap" in v:
        cm = lookup(objects, "ConfigMap", v["configMap"]["name"])
        data = {k: s.encode() for k, s in cm.get("data", {}).items()}
        return data, v["configMap"].get("defaultMode", 0o644), v["configMap"]
    s = lookup(objects, "Secret", v["secret"]["secretName"])
    data = {k: base64.b64decode(b) for k, b in s.get("data", {}).items()}
    data.update({k: t.encode() for k, t in s.get("stringData", {}).items()})
    return data, v["secret"].get("defaultMode", 0o644), v["secret"]


def prepare_volumes(objects, pod, root, shm_root):
    """Host directories for every volume of the pod: {volume name: path}."""
    gid = pod["spec"].get("securityContext", {}).get("fsGroup")
    paths = {}
    for v in pod["spec"].get("volumes", []):
        name = v["name"]
        if "configMap" in v or "secret" in v:
            data, mode, src = volume_data(objects, v)
            if "items" in src:
                raise SpecError(f"volume {name}: items are not handled")
            paths[name] = os.path.join(root, "vol-" + name)
            write_items(paths[name], data, mode, gid)
        elif "emptyDir" in v:
            base = shm_root if v["emptyDir"].get("medium") == "Memory" else root
            paths[name] = os.path.join(base, "vol-" + name)
            make_writable_dir(paths[name], 0o777, gid)
        else:
            raise SpecError(f"volume {name}: only configMap, secret and emptyDir are handled")
    for t in pod.get("volumeClaimTemplates", []):
        name = t["metadata"]["name"]
        paths[name] = os.path.join(root, "pvc-" + name)
        make_writable_dir(paths[name], 0o755, gid)
    return paths


def security_args(pod_sc, c):
    sc = dict(pod_sc)
    sc.update(c.get("securityContext", {}))
    check_known(f"container {c['name']} securityContext",
                set(c.get("securityContext", {})), KNOWN_SECURITY)
    uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
    if uid is None or gid is None:
        raise SpecError(f"container {c['name']}: runAsUser/runAsGroup unset: the test "
                        "would depend on the image's USER")
    if sc.get("runAsNonRoot") and uid == 0:
        raise SpecError(f"container {c['name']}: runAsNonRoot with runAsUser 0")
    args = [f"--user={uid}:{gid}"]
    if "fsGroup" in pod_sc:
        args.append(f"--group-add={pod_sc['fsGroup']}")
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args.append("--security-opt=no-new-privileges")
    if sc.get("privileged"):
        raise SpecError(f"container {c['name']}: privileged")
    caps = sc.get("capabilities", {})
    args += [f"--cap-drop={x}" for x in caps.get("drop", [])]
    args += [f"--cap-add={x}" for x in caps.get("add", [])]
    profile = sc.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if profile != "RuntimeDefault":
        raise SpecError(f"container {c['name']}: seccompProfile {profile} not handled")
    return args  # RuntimeDefault: podman's default seccomp profile


def resource_args(c):
    limits = c.get("resources", {}).get("limits", {})
    args = []
    if "cpu" in limits:
        args.append(f"--cpus={parse_quantity_cpu(limits['cpu'])}")
    if "memory" in limits:
        args.append(f"--memory={parse_quantity_bytes(limits['memory'])}")
    return args  # ephemeral-storage: enforced by the kubelet's eviction only


def container_args(pod, c, volumes, extra_mounts):
    """podman run arguments (without run and the network) for container c."""
    spec = pod["spec"]
    meta = spec_meta(pod)
    check_known(f"container {c['name']}", set(c), KNOWN_CONTAINER)
    env = container_env(c, meta)
    args = security_args(spec.get("securityContext", {}), c) + resource_args(c)
    args += [f"--env={k}={v}" for k, v in env.items()]
    for m in c.get("volumeMounts", []):
        if m["name"] not in volumes:
            raise SpecError(f"container {c['name']}: mounts unknown volume {m['name']}")
        if "subPath" in m:
            raise SpecError(f"container {c['name']}: subPath not handled")
        ro = ",ro=true" if m.get("readOnly") else ""
        args.append(f"--mount=type=bind,src={volumes[m['name']]},dst={m['mountPath']}{ro}")
    args += extra_mounts
    command = [expand(x, env) for x in c.get("command", [])]
    if command:
        args.append(f"--entrypoint={command[0]}")
    args.append("--pull=never")
    args.append(c["image"])
    args += command[1:] + [expand(x, env) for x in c.get("args", [])]
    return args


def spec_meta(pod):
    return {"labels": pod["spec_labels"], "name": pod["pod_name"],
            "namespace": pod["namespace"]}


def pod_of(statefulset):
    """The pod a StatefulSet with replicas: 1 creates: {spec, labels, ...}."""
    s = statefulset["spec"]
    if s.get("replicas", 1) != 1:
        raise SpecError(f"StatefulSet {statefulset['metadata']['name']}: replicas != 1")
    check_known(f"StatefulSet {statefulset['metadata']['name']} pod spec",
                set(s["template"]["spec"]), KNOWN_POD)
    spec = s["template"]["spec"]
    if spec.get("automountServiceAccountToken", True) or spec.get("enableServiceLinks", True):
        raise SpecError("automountServiceAccountToken/enableServiceLinks must be false: "
                        "the test does not fake a service account or service env")
    return {
        "spec": spec,
        "spec_labels": s["template"]["metadata"].get("labels", {}),
        "pod_name": statefulset["metadata"]["name"] + "-0",
        "namespace": statefulset["metadata"].get("namespace", "default"),
        "volumeClaimTemplates": s.get("volumeClaimTemplates", []),
    }


def probe_target(c, probe_name):
    """(port, service, period, timeout, failure threshold) of a gRPC probe."""
    p = c.get(probe_name)
    if p is None:
        return None
    if "grpc" not in p:
        raise SpecError(f"container {c['name']} {probe_name}: only gRPC probes are handled")
    port = p["grpc"]["port"]
    declared = {x["containerPort"] for x in c.get("ports", [])}
    if port not in declared:
        raise SpecError(f"container {c['name']} {probe_name}: port {port} is not a declared "
                        f"containerPort {sorted(declared)}")
    return (port, p["grpc"].get("service", ""), p.get("periodSeconds", 10),
            p.get("timeoutSeconds", 1), p.get("failureThreshold", 3))
