#!/usr/bin/env python3
"""ctest container_pods: the dev overlay's pods, started for real with podman.

1. builds the image (deploy/docker/build-image.sh) under the name the
   rendered StatefulSets use;
2. writes the overlay's inputs with the image's own `ledgerctl cluster init
   --k8s` and gen-dev-tls.sh, renders the overlay with kubectl kustomize;
3. gives every pod its own network namespace on a private bridge that is not
   connected to the host's network (192.0.2.0/24, TEST-NET-1), and an
   /etc/hosts naming every replica's Service, as cluster DNS would;
4. for each StatefulSet, does what a kubelet does (tests/container/podspec.py):
   volumes from the rendered ConfigMap and Secrets with the manifest's modes
   and fsGroup, init containers to completion, then the container with its
   args, env, user, read-only root, dropped capabilities, limits; checks that
   the process listens on exactly the declared ports and that the startup,
   liveness and readiness gRPC probes answer as declared;
5. runs the demo workload with the image's ledgerctl from a client pod;
6. kills one replica's container and restarts it on its volumes while the
   others take more transfers, until its readiness probe passes again;
7. stops every container with SIGTERM (exit 0 required) and verifies every
   replica's chain with `ledgerctl verify`; all heads must agree.

Anything the manifest says that the binary does not accept fails a step.
Cleanup is by container id and namespace name, whatever happened.

  pods_test.py --probe BUILD/tests/grpc_health_probe
  env: PBFT_LEDGER_SKIP_CONTAINER_TESTS=REASON skips (exit 77), only for
       running the suite inside a container, where podman cannot nest.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import yaml

import podspec

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KUBECTL = os.environ.get("KUBECTL", "/usr/local/libexec/pbft-ledger/kubectl")
SUBNET = "192.0.2"  # TEST-NET-1: never routed; the bridge has no host link
CLIENT_IP = f"{SUBNET}.100"
READY_WAIT_S = 90  # bound on every wait for a probe


def log(msg):
    print(f"container_pods: {msg}", flush=True)


def run(cmd, check=True, timeout=600, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def podman_global():
    out = run(["bash", "-c", f"source {ROOT}/deploy/docker/podman-lib.sh; "
               "podman_global_args; podman_ulimit_args"]).stdout.split()
    return [a for a in out if a.startswith("--runtime")], [a for a in out if a.startswith("--ulimit")]


class Harness:
    """Owns every container, namespace and directory the test makes."""

    def __init__(self, probe):
        self.probe_bin = probe
        self.tag = f"plt{os.getpid() % 100000}"
        self.tmp = tempfile.mkdtemp(prefix="container-pods-")
        self.shm = tempfile.mkdtemp(prefix="container-pods-", dir="/dev/shm")
        self.global_args, self.ulimit_args = podman_global()
        self.containers = []
        self.netns = []
        self.hosts_file = os.path.join(self.tmp, "hosts")
        self.pods = {}  # replica id -> {pod, ip, netns, volumes, cid}

    # --- podman and namespaces -------------------------------------------
    def podman(self, *args, check=True, timeout=600):
        return run(["podman", *self.global_args, *args], check=check, timeout=timeout)

    def netns_add(self, name, ip):
        ns = f"{self.tag}-{name}"
        run(["ip", "netns", "add", ns])
        self.netns.append(ns)
        host_end, pod_end = f"{self.tag}h{len(self.netns)}", f"{self.tag}p{len(self.netns)}"
        hub = self.netns[0]
        run(["ip", "-n", ns, "link", "add", pod_end, "type", "veth", "peer", "name", host_end,
             "netns", hub])
        run(["ip", "-n", hub, "link", "set", host_end, "master", "br0", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", pod_end])
        run(["ip", "-n", ns, "link", "set", pod_end, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def network(self):
        hub = f"{self.tag}-hub"
        run(["ip", "netns", "add", hub])
        self.netns.append(hub)
        run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", hub, "link", "set", "br0", "up"])

    def in_client_ns(self, *cmd, timeout=30):
        return run(["ip", "netns", "exec", self.client_ns, *cmd], check=False, timeout=timeout)

    def cleanup(self):
        for cid in reversed(self.containers):
            self.podman("rm", "--force", "--time=5", cid, check=False, timeout=60)
        for ns in reversed(self.netns):
            run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    # --- inputs and rendering ---------------------------------------------
    def render(self, image):
        """Inputs of the dev overlay (by the image's ledgerctl), rendered."""
        k8s = os.path.join(self.tmp, "k8s")
        shutil.copytree(os.path.join(ROOT, "deploy", "k8s"), k8s, symlinks=True)
        gen = os.path.join(k8s, "overlays", "dev", "generated")
        shutil.rmtree(gen, ignore_errors=True)
        os.makedirs(gen)
        self.podman("run", "--rm", "--network=none", *self.ulimit_args, "--user=0:0",
                    f"--mount=type=bind,src={gen},dst=/out", "--entrypoint=ledgerctl",
                    "--pull=never", image, "cluster", "init", "--k8s", "--namespace",
                    "pbft-ledger", "--replicas", "4", "--clients", "2", "--out", "/out",
                    "--force")
        run(["bash", os.path.join(ROOT, "deploy", "k8s", "gen-dev-tls.sh"), gen])
        self.generated = gen
        out = run([KUBECTL, "kustomize", os.path.join(k8s, "overlays", "dev")]).stdout
        return [o for o in yaml.safe_load_all(out) if o]

    def write_hosts(self, objects):
        """Cluster DNS, as /etc/hosts: each replica's Service name -> pod IP."""
        cluster = json.loads(next(o for o in objects if o["kind"] == "ConfigMap")
                             ["data"]["cluster.json"])
        lines = ["127.0.0.1 localhost"]
        for r in cluster["replicas"]:
            host = r["address"].rsplit(":", 1)[0]
            lines.append(f"{SUBNET}.{10 + int(r.get('id', 0))} {host}")
        with open(self.hosts_file, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.hosts_file, 0o644)
        return cluster

    # --- pods ---------------------------------------------------------------
    def net_args(self, ns, hostname):
        return [f"--network=ns:/run/netns/{ns}", f"--hostname={hostname}",
                f"--mount=type=bind,src={self.hosts_file},dst=/etc/hosts,ro=true",
                *self.ulimit_args, f"--label=org.pbft-ledger.test={self.tag}"]

    def create_pod(self, replica, sts, objects):
        pod = podspec.pod_of(sts)
        ip = f"{SUBNET}.{10 + replica}"
        root = os.path.join(self.tmp, pod["pod_name"])
        shm = os.path.join(self.shm, pod["pod_name"])
        volumes = podspec.prepare_volumes(objects, pod, root, shm)
        ns = self.netns_add(pod["pod_name"], ip)
        self.pods[replica] = {"pod": pod, "ip": ip, "ns": ns, "volumes": volumes}
        for c in pod["spec"].get("initContainers", []):
            args = podspec.container_args(pod, c, volumes, [])
            r = self.podman("run", "--rm", *self.net_args(ns, pod["pod_name"]), *args,
                            check=False, timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"{pod['pod_name']} init container {c['name']} exited "
                                   f"{r.returncode}: {r.stdout}{r.stderr}")
        self.start_container(replica)

    def start_container(self, replica):
        p = self.pods[replica]
        pod = p["pod"]
        (c,) = pod["spec"]["containers"]
        args = podspec.container_args(pod, c, p["volumes"], [])
        name = f"{self.tag}-{pod['pod_name']}"
        self.podman("rm", "--force", name, check=False)
        cid = self.podman("run", "--detach", f"--name={name}",
                          *self.net_args(p["ns"], pod["pod_name"]), *args).stdout.strip()
        self.containers.append(cid)
        p["cid"], p["container"] = cid, c
        log(f"started {pod['pod_name']} ({cid[:12]}) at {p['ip']}")

    def container_log(self, replica):
        r = self.podman("logs", "--tail=30", self.pods[replica]["cid"], check=False)
        return r.stdout + r.stderr

    def probe(self, replica, probe_name):
        """One probe as the kubelet runs it: (passed, answer)."""
        p = self.pods[replica]
        port, service, _, timeout, _ = podspec.probe_target(p["container"], probe_name)
        r = self.in_client_ns(self.probe_bin, f"{p['ip']}:{port}", service,
                              str(timeout * 1000), timeout=timeout + 5)
        return r.returncode == 0, (r.stdout + r.stderr).strip()

    def wait_probe(self, replica, probe_name):
        """Probe until it passes, within the manifest's failure budget
        (periodSeconds x failureThreshold), capped at READY_WAIT_S."""
        p = self.pods[replica]
        _, _, period, _, threshold = podspec.probe_target(p["container"], probe_name)
        deadline = time.monotonic() + min(period * threshold, READY_WAIT_S)
        answer = ""
        while time.monotonic() < deadline:
            ok, answer = self.probe(replica, probe_name)
            if ok:
                return
            if self.state(replica) != "running":
                break
            time.sleep(0.5)
        raise RuntimeError(f"{p['pod']['pod_name']} {probe_name} never passed (last answer: "
                           f"{answer}); container log:\n{self.container_log(replica)}")

    def state(self, replica):
        return self.podman("inspect", "--format={{.State.Status}}", self.pods[replica]["cid"],
                           check=False).stdout.strip()

    def check_ports(self, replica):
        """The process listens on exactly the declared containerPorts."""
        p = self.pods[replica]
        declared = {x["containerPort"] for x in p["container"].get("ports", [])}
        out = run(["ip", "netns", "exec", p["ns"], "ss", "-ltnH"]).stdout
        listening = {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()}
        if listening != declared:
            raise RuntimeError(f"{p['pod']['pod_name']} listens on {sorted(listening)}, the "
                               f"manifest declares {sorted(declared)}")

    # --- the client pod -----------------------------------------------------
    def client_setup(self, objects):
        """The client's files: the rendered ConfigMap, its key, its TLS."""
        self.client_ns = self.netns_add("client", CLIENT_IP)
        cfg = next(o for o in objects if o["kind"] == "ConfigMap")
        d = os.path.join(self.tmp, "client")
        podspec.write_items(os.path.join(d, "config"),
                            {k: v.encode() for k, v in cfg["data"].items()}, 0o444, None)
        files = {}
        for c in (1, 2):
            files[f"client-{c}.key"] = open(os.path.join(self.generated, "keys",
                                                         f"client-{c}.key"), "rb").read()
        tls = os.path.join(self.generated, "tls")
        files["ca.crt"] = open(os.path.join(tls, "ca.crt"), "rb").read()
        files["tls.crt"] = open(os.path.join(tls, "client-1.crt"), "rb").read()
        files["tls.key"] = open(os.path.join(tls, "client-1.key"), "rb").read()
        podspec.write_items(os.path.join(d, "secret"), files, 0o400, None)
        self.client_dir = d

    def ctl(self, image, *args, client=1, check=True):
        """The image's ledgerctl, as client <client>, from the client pod."""
        d = self.client_dir
        r = self.podman("run", "--rm", *self.net_args(self.client_ns, "client"), "--read-only",
                        "--user=0:0", "--cap-drop=ALL",
                        f"--mount=type=bind,src={d}/config,dst=/etc/pbft-ledger/config,ro=true",
                        f"--mount=type=bind,src={d}/secret,dst=/etc/pbft-ledger/tls,ro=true",
                        "--entrypoint=ledgerctl", "--pull=never", image,
                        "--config=/etc/pbft-ledger/config/cluster.json",
                        f"--key=/etc/pbft-ledger/tls/client-{client}.key", "--deadline=15",
                        *args, check=False, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"ledgerctl {' '.join(args)} exited {r.returncode}: "
                               f"{r.stdout}{r.stderr}")
        return r

    def balance(self, image, account):
        out = self.ctl(image, "--json", "balance", f"--account={account}").stdout
        return int(json.loads(out.strip().splitlines()[-1])["balance"])

    def workload(self, image, first_id, count):
        """count transfers of 10 from account 1 to 1000, ids from first_id."""
        for t in range(first_id, first_id + count):
            self.ctl(image, "transfer", f"--id={t}", "--from=1", "--to=1000", "--amount=10",
                     f"--memo=container test {t}")

    # --- stop and verify ----------------------------------------------------
    def stop_all(self):
        """SIGTERM with the manifest's grace period; each must exit 0."""
        bad = []
        for replica, p in sorted(self.pods.items()):
            grace = p["pod"]["spec"].get("terminationGracePeriodSeconds", 30)
            self.podman("stop", f"--time={grace}", p["cid"], timeout=grace + 30)
            code = self.podman("inspect", "--format={{.State.ExitCode}}", p["cid"]).stdout.strip()
            if code != "0":
                bad.append(f"{p['pod']['pod_name']} exited {code}:\n{self.container_log(replica)}")
        if bad:
            raise RuntimeError("SIGTERM did not stop cleanly: " + "\n".join(bad))

    def verify_chains(self, image):
        heads = {}
        for replica, p in sorted(self.pods.items()):
            data = p["volumes"]["data"]
            cfg = p["volumes"]["config"]
            r = self.podman("run", "--rm", "--network=none", *self.ulimit_args,
                            "--user=10001:10001", "--read-only", "--cap-drop=ALL",
                            f"--mount=type=bind,src={data},dst=/var/lib/pbft-ledger",
                            f"--mount=type=bind,src={cfg},dst=/etc/pbft-ledger/config,ro=true",
                            "--entrypoint=ledgerctl", "--pull=never", image, "--json", "verify",
                            "--data-dir=/var/lib/pbft-ledger",
                            "--config=/etc/pbft-ledger/config/cluster.json", check=False)
            try:
                v = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                v = {"ok": False, "error": r.stdout + r.stderr}
            if r.returncode != 0 or not v.get("ok"):
                raise RuntimeError(f"verify of {p['pod']['pod_name']} failed: {v}")
            heads[replica] = (v["head_height"], v["head_hash"], v["state_digest"])
            log(f"{p['pod']['pod_name']}: chain verified, {v['blocks_verified']} blocks, "
                f"head {v['head_height']}")
        return heads

    def wait_executed_equal(self, image):
        """Every replica reports the same last_executed_seq (bounded)."""
        deadline = time.monotonic() + READY_WAIT_S
        seqs = {}
        while time.monotonic() < deadline:
            r = self.ctl(image, "--json", "status", check=False)
            try:
                seqs = {int(s["replica_id"]): int(s.get("last_executed_seq", -1))
                        for s in json.loads(r.stdout) if "error" not in s}
            except (ValueError, KeyError, TypeError):
                seqs = {}
            if len(seqs) == len(self.pods) and len(set(seqs.values())) == 1:
                return seqs
            time.sleep(1)
        raise RuntimeError(f"replicas did not converge: last_executed_seq {seqs}")


def build_image(image):
    name = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
    log(f"building {name} (deploy/docker/build-image.sh)")
    start = time.monotonic()
    r = run(["bash", os.path.join(ROOT, "deploy", "docker", "build-image.sh"), "--tag", name],
            check=False, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"image build failed:\n{r.stdout[-4000:]}{r.stderr[-4000:]}")
    log(r.stdout.strip().splitlines()[-1] + f" (step took {time.monotonic() - start:.0f} s)")


def image_programs(h, image):
    """The runtime image carries ledgerd and ledgerctl, nothing else."""
    out = h.podman("run", "--rm", "--network=none", *h.ulimit_args, "--entrypoint=/bin/ls",
                   "--pull=never", image, "/usr/local/bin").stdout.split()
    if sorted(out) != ["ledgerctl", "ledgerd"]:
        raise RuntimeError(f"/usr/local/bin in the image holds {out}, want ledgerctl, ledgerd")


def scenario(h, args):
    h.network()
    # The overlay's images: entry names the image; the rendered StatefulSets
    # are checked against it below.
    image = dev_image()
    build_image(image)
    image_programs(h, image)
    objects = h.render(image)
    sets = sorted((o for o in objects if o["kind"] == "StatefulSet"),
                  key=lambda o: o["metadata"]["name"])
    for s in sets:
        for c in s["spec"]["template"]["spec"]["containers"]:
            if c["image"] != image:
                raise RuntimeError(f"{s['metadata']['name']} runs {c['image']}, built {image}")
    h.write_hosts(objects)
    h.client_setup(objects)
    for s in sets:
        replica = int(s["spec"]["template"]["metadata"]["labels"]["pbft-ledger/replica"])
        h.create_pod(replica, s, objects)
    for replica in sorted(h.pods):
        h.wait_probe(replica, "startupProbe")
        h.wait_probe(replica, "livenessProbe")
        h.check_ports(replica)
    for replica in sorted(h.pods):
        h.wait_probe(replica, "readinessProbe")
    log(f"{len(h.pods)} pods started; startup, liveness and readiness probes pass; "
        "each listens on exactly its declared ports")

    h.ctl(image, "create-account", "--id=1000", "--ledger=1")
    before = h.balance(image, 1)
    h.workload(image, 1, 5)
    h.ctl(image, "transfer", "--id=100", "--from=2", "--to=1000", "--amount=500", client=2)
    if h.ctl(image, "transfer", "--id=101", "--from=1000", "--to=1", "--amount=999999999",
             check=False).returncode == 0:
        raise RuntimeError("an overdraft was accepted")
    if h.balance(image, 1000) != 550 or h.balance(image, 1) != before - 50:
        raise RuntimeError("balances after the demo workload are wrong")
    log("demo workload done: balances as expected, the overdraft refused")

    victim = max(h.pods)
    h.podman("kill", "--signal=KILL", h.pods[victim]["cid"])
    h.podman("wait", h.pods[victim]["cid"], timeout=60)
    log(f"killed {h.pods[victim]['pod']['pod_name']}; 3 replicas take 10 more transfers")
    h.workload(image, 6, 10)
    h.start_container(victim)
    h.wait_probe(victim, "startupProbe")
    h.wait_probe(victim, "readinessProbe")
    seqs = h.wait_executed_equal(image)
    if h.balance(image, 1000) != 650:
        raise RuntimeError("balance of 1000 after the restart is wrong")
    log(f"restarted on its volumes; ready again; every replica at seq {seqs[victim]}")

    h.stop_all()
    heads = h.verify_chains(image)
    if len(set(heads.values())) != 1:
        raise RuntimeError(f"replicas' chains differ: {heads}")


def dev_image():
    """The image the dev overlay runs: images: newName:newTag."""
    k = yaml.safe_load(open(os.path.join(ROOT, "deploy", "k8s", "overlays", "dev",
                                         "kustomization.yaml")))
    (img,) = [i for i in k["images"] if i["name"] == "pbft-ledger"]
    return f"{img.get('newName', img['name'])}:{img['newTag']}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", required=True, help="grpc_health_probe binary")
    args = ap.parse_args()
    skip = os.environ.get("PBFT_LEDGER_SKIP_CONTAINER_TESTS")
    if skip:
        log(f"SKIPPED: {skip}")
        return 77
    if os.geteuid() != 0 or shutil.which("podman") is None:
        log("FAIL: needs root and podman (deploy/install-deps.sh installs it)")
        return 1
    start = time.monotonic()
    # A timeout's SIGTERM unwinds through the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("container_pods: terminated"))
    h = Harness(os.path.abspath(args.probe))
    try:
        scenario(h, args)
    except (RuntimeError, podspec.SpecError, subprocess.TimeoutExpired) as e:
        log(f"FAIL: {e}")
        return 1
    except Exception:  # a bug in the harness: fail with its traceback
        traceback.print_exc()
        log("FAIL: the harness raised")
        return 1
    finally:
        h.cleanup()
    log(f"passed in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
