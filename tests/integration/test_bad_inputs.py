"""Issue 10: every user mistake and environment fault is one line, a documented exit code,
no traceback, and quick (the silent server included).

Each case runs the suites as a user would (a pytest subprocess with the project's pytest.ini)
against a real offline cluster or a deliberately broken endpoint on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_conformance.errors import ExitCode
from gpu_conformance.offline import OfflineCluster
from gpu_conformance.paths import REPO_ROOT

LIMIT_SECONDS = 15
USAGE, UNAVAILABLE = int(ExitCode.USAGE_ERROR), int(ExitCode.CLUSTER_UNAVAILABLE)


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    code: int
    #: a fragment the one error line must contain
    says: str
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class Outcome:
    code: int
    output: str
    seconds: float


def run(args: list[str], env: dict[str, str], cwd: Path) -> Outcome:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO_ROOT / "pytest.ini"),
         f"--rootdir={REPO_ROOT}", "--junitxml=/dev/null", "-p", "no:cacheprovider", *args,
         str(REPO_ROOT / "suites")],
        cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "GPU_CONFORMANCE_STATE": str(cwd / "state"), **env})
    return Outcome(result.returncode, result.stdout + result.stderr, time.monotonic() - started)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if line.startswith(("ERROR:", "[gpu-conformance] ERROR:", "gpu-conformance: error"))]


# --- broken endpoints on 127.0.0.1 ---------------------------------------------------------------

@pytest.fixture(scope="module")
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(scope="module")
def plain_http_server() -> Iterator[int]:
    """Speaks plain HTTP where the kubeconfig says https."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- kubeconfigs broken in every way -------------------------------------------------------------

def _config(cluster: OfflineCluster) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    return data


def _write(tmp: Path, name: str, data: Any) -> Path:
    path = tmp / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def kubeconfigs(offline_cluster: OfflineCluster, kubectl_path: Path,
                tmp_path_factory: pytest.TempPathFactory, silent_server: int,
                plain_http_server: int) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("kubeconfigs")
    good = _config(offline_cluster)

    def variant(name: str, change: Callable[[dict[str, Any]], None]) -> Path:
        data = json.loads(json.dumps(good))
        change(data)
        return _write(tmp, name, data)

    def server(url: str) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["clusters"][0]["cluster"].update({"server": url})

    def user(**fields: str) -> Callable[[dict[str, Any]], None]:
        def change(d: dict[str, Any]) -> None:
            d["users"][0]["user"] = dict(fields)
        return change

    kubectl = [str(kubectl_path), f"--kubeconfig={offline_cluster.kubeconfig}"]
    subprocess.run([*kubectl, "create", "serviceaccount", "viewer", "-n", "default"],
                   capture_output=True, check=False)
    subprocess.run([*kubectl, "create", "clusterrolebinding", "bad-inputs-viewer",
                    "--clusterrole=view", "--serviceaccount=default:viewer"],
                   capture_output=True, check=False)
    token = subprocess.run([*kubectl, "create", "token", "viewer", "-n", "default"],
                           capture_output=True, text=True, check=True).stdout.strip()
    def other_ca(d: dict[str, Any]) -> None:
        d["clusters"][0]["cluster"].pop("certificate-authority-data", None)
        d["clusters"][0]["cluster"]["certificate-authority"] = "/etc/ssl/certs/ca-certificates.crt"

    return {
        "not-yaml": _write(tmp, "not-yaml", "clusters: [\n  - : : :\n"),
        "yaml-list": _write(tmp, "yaml-list", "- a\n- b\n"),
        "wrong-types": _write(tmp, "wrong-types", "apiVersion: v1\nclusters: 5\n"),
        "empty": _write(tmp, "empty", ""),
        "refused": variant("refused", server(f"https://127.0.0.1:{free_port()}")),
        "silent": variant("silent", server(f"https://127.0.0.1:{silent_server}")),
        "plain-http": variant("plain-http", server(f"https://127.0.0.1:{plain_http_server}")),
        "bad-token": variant("bad-token", user(token="not-a-real-token")),
        "viewer": variant("viewer", user(token=token)),
        "wrong-ca": variant("wrong-ca", other_ca),
        "bad-client-cert": variant("bad-client-cert", user(**{
            "client-certificate-data": base64.b64encode(b"not a certificate").decode(),
            "client-key-data": base64.b64encode(b"not a key").decode()})),
    }


def _cases(tmp: Path) -> list[Case]:
    not_yaml_manifest = tmp / "not-yaml.yaml"
    not_yaml_manifest.write_text("kind: [unclosed\n")
    no_ds = tmp / "no-daemonset.yaml"
    no_ds.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    outside = Path("/tmp") / f"missing-manifest-{os.getpid()}.yaml"
    return [
        Case("backend bogus", ("--backend", "bogus"), USAGE, "--backend 'bogus' is not one of"),
        Case("backend from env", (), USAGE, "GPU_CONFORMANCE_BACKEND 'bogus' is not one of",
             (("GPU_CONFORMANCE_BACKEND", "bogus"),)),
        Case("workload bogus", ("--workload", "bogus"), USAGE, "unknown workload 'bogus'"),
        Case("gpu-nodes not a number (env)", (), USAGE,
             "GPU_CONFORMANCE_GPU_NODES expects a whole number, got 'x'",
             (("GPU_CONFORMANCE_GPU_NODES", "x"),)),
        Case("gpu-nodes negative", ("--gpu-nodes", "-1"), USAGE, "--gpu-nodes must be at least 0"),
        Case("gpu product bogus", ("--gpu-product", "Bogus GPU"), USAGE,
             "unknown GPU product 'Bogus GPU'"),
        Case("timeout malformed", ("--gpu-timeout", "job-complete=soon"), USAGE,
             "bad timeout 'job-complete=soon'"),
        Case("timeout unknown", ("--gpu-timeout", "job-finish=5"), USAGE,
             "unknown timeout 'job-finish'"),
        Case("accuracy out of range", ("--min-accuracy", "2"), USAGE,
             "--min-accuracy must be between 0 and 1"),
        Case("expect-gpu not a regex", ("--expect-gpu", "("), USAGE,
             "is not a valid regular expression"),
        Case("run id", ("--run-id", "Not Valid"), USAGE, "use 1-32 lowercase letters"),
        Case("workload-nodes", ("--workload-nodes", "zero"), USAGE,
             "expected all, one or a number"),
        Case("busy policy", ("--busy", "maybe"), USAGE, "--busy 'maybe' is not one of fail, skip"),
        Case("plugin mode", ("--plugin", "sometimes"), USAGE, "--plugin 'sometimes' is not one of"),
        Case("manifest missing, separate token", ("--plugin-manifest", str(outside)), USAGE,
             f"{outside} does not exist"),
        Case("manifest not YAML", (f"--plugin-manifest={not_yaml_manifest}",), USAGE,
             "is not valid YAML"),
        Case("manifest without DaemonSet", (f"--plugin-manifest={no_ds}",), USAGE,
             "holds no DaemonSet"),
        Case("aks node count", ("--backend", "aks", "--aks-node-count", "0"), USAGE,
             "--aks-node-count 0: expected 1 to 100"),
        Case("aks without subscription", ("--backend", "aks"), USAGE,
             "no Azure subscription given", (("AZURE_SUBSCRIPTION_ID", ""),)),
        Case("kind without docker", ("--backend", "kind"), UNAVAILABLE,
             "kind needs a Docker engine", (("PATH", "/usr/bin:/bin"),)),
        Case("attach without any kubeconfig", ("--backend", "attach"), USAGE,
             "--backend attach needs a cluster", (("HOME", str(tmp)), ("KUBECONFIG", ""))),
        Case("kubeconfig missing", ("--backend", "attach", "--kubeconfig=/nonexistent/kc"),
             USAGE, "/nonexistent/kc does not exist"),
        Case("KUBECONFIG missing", ("--backend", "attach"), USAGE,
             "KUBECONFIG=/nonexistent/env-kc: /nonexistent/env-kc does not exist",
             (("KUBECONFIG", "/nonexistent/env-kc"),)),
        Case("kubeconfig is a directory", ("--backend", "attach", f"--kubeconfig={tmp}"), USAGE,
             "is a directory, not a kubeconfig file"),
    ]


KUBECONFIG_CASES = [
    ("not-yaml", USAGE, "is not valid YAML"),
    ("yaml-list", USAGE, "it is a YAML list, not a mapping"),
    ("wrong-types", USAGE, "'clusters' must be a list of named entries, got int"),
    ("empty", USAGE, "is not a kubeconfig"),
    ("refused", UNAVAILABLE, "connection refused"),
    ("silent", UNAVAILABLE, "accepted the connection but did not answer"),
    ("plain-http", UNAVAILABLE, "does not speak TLS"),
    ("bad-token", UNAVAILABLE, "401 Unauthorized"),
    ("viewer", UNAVAILABLE, "forbidden: the suite needs to create namespaces, delete namespaces"),
    ("wrong-ca", UNAVAILABLE, "certificate verify failed"),
    ("bad-client-cert", USAGE, "client certificate or key is not usable"),
]


def _check(outcome: Outcome, code: int, says: str) -> None:
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    lines = error_lines(outcome.output)
    assert len(lines) == 1, outcome.output[-3000:]
    assert says in lines[0], (says, lines[0])
    assert outcome.code == code, (outcome.code, outcome.output[-2000:])
    assert outcome.seconds < LIMIT_SECONDS, (outcome.seconds, lines[0])


def test_bad_options_and_files(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    problems = []
    for case in cases:
        outcome = run(list(case.args), dict(case.env), tmp_path)
        try:
            _check(outcome, case.code, case.says)
        except AssertionError as exc:
            problems.append(f"{case.name}: {exc}")
    assert not problems, "\n".join(problems)
    assert len(cases) + len(KUBECONFIG_CASES) + 1 >= 30


@pytest.mark.parametrize(("name", "code", "says"), KUBECONFIG_CASES,
                         ids=[c[0] for c in KUBECONFIG_CASES])
def test_bad_kubeconfigs_and_endpoints(name: str, code: int, says: str,
                                       kubeconfigs: dict[str, Path], tmp_path: Path) -> None:
    outcome = run(["--backend", "attach", f"--kubeconfig={kubeconfigs[name]}"], {}, tmp_path)
    _check(outcome, code, says)


def test_unknown_context_is_one_line(offline_cluster: OfflineCluster, tmp_path: Path) -> None:
    outcome = run(["--backend", "attach", f"--kubeconfig={offline_cluster.kubeconfig}",
                   "--kube-context", "nope"], {}, tmp_path)
    _check(outcome, USAGE, "no context named 'nope'")
