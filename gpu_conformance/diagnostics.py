"""What to show when a check fails: events, pod states, log tails, node GPU resources.

Collected only on failure, capped in size, and never raising: a diagnostics error must
not hide the failure it was meant to explain.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from gpu_conformance import gpus
from gpu_conformance.checks import find_gpu_nodes
from gpu_conformance.hints import likely_causes
from gpu_conformance.kube import call, short

MAX_EVENTS = 25
MAX_PODS = 15
LOG_TAIL_LINES = 15
MAX_CHARS = 12_000


def _when(event: Any) -> datetime:
    for attr in ("last_timestamp", "event_time", "first_timestamp"):
        value = getattr(event, attr, None)
        if value:
            return value if isinstance(value, datetime) else datetime.now(UTC)
    return (event.metadata.creation_timestamp if event.metadata else None) or datetime.min.replace(
        tzinfo=UTC)


def _section(title: str, lines: Iterable[str]) -> list[str]:
    body = list(lines)
    return [f"--- {title} ---", *(body or ["(none)"])]


def collect(api: client.ApiClient, namespaces: Iterable[str], *, label_selector: str | None = None,
            with_logs: bool = True) -> str:
    """A capped, human-readable dump of the namespaces' state and the GPU nodes."""
    core = client.CoreV1Api(api)
    out: list[str] = []
    texts: list[str] = []
    for ns in dict.fromkeys(namespaces):
        try:
            events = sorted(call(core.list_namespaced_event, ns).items, key=_when)[-MAX_EVENTS:]
            lines = [f"{_when(e):%H:%M:%S} {e.type} {e.reason} {e.involved_object.kind}/"
                     f"{e.involved_object.name}: {(e.message or '').strip()}" for e in events]
            texts += lines
            out += _section(f"events in {ns} (last {MAX_EVENTS}, oldest first)", lines)
            kwargs = {"label_selector": label_selector} if label_selector else {}
            pods: list[Any] = call(core.list_namespaced_pod, ns, **kwargs).items[:MAX_PODS]
            out += _section(f"pods in {ns}", (_pod_line(p) for p in pods))
            texts += [_pod_line(p) for p in pods]
            if with_logs:
                # healthy long-running pods (plugin pods that are Ready) tell nothing: skip them
                for pod in [p for p in pods if not _healthy_running(p)]:
                    for container in pod.spec.containers:
                        tail = _log_tail(core, pod, container.name)
                        texts.append(tail)
                        out += _section(f"log tail {ns}/{pod.metadata.name}/{container.name}",
                                        tail.splitlines())
        except Exception as exc:  # diagnostics never mask the failure
            out.append(f"(could not read namespace {ns}: {short(exc)})")
    out += _section("GPU nodes (nvidia.com/gpu capacity / allocatable, in use)", _node_lines(core))
    causes = likely_causes(*texts)
    if causes:
        out += _section("likely cause", causes)
    text = "\n".join(out)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS] + f"\n... (diagnostics cut at {MAX_CHARS} characters)"
    return text


def _healthy_running(pod: Any) -> bool:
    status = pod.status
    return bool(status and status.phase == "Running" and all(
        cs.ready for cs in status.container_statuses or []))


def _pod_line(pod: Any) -> str:
    status = pod.status
    parts = [f"{pod.metadata.name} node={pod.spec.node_name or '-'} phase={status.phase if status else '?'}"]
    for cond in (status.conditions if status else None) or []:
        if cond.status != "True" and cond.reason:
            parts.append(f"{cond.type}={cond.status}({cond.reason}: {cond.message or ''})")
    for cs in (status.container_statuses if status else None) or []:
        state = cs.state
        if state and state.waiting:
            parts.append(f"{cs.name} waiting {state.waiting.reason}: {state.waiting.message or ''}")
        elif state and state.terminated:
            parts.append(f"{cs.name} terminated {state.terminated.reason} "
                         f"exit={state.terminated.exit_code}")
        parts.append(f"restarts={cs.restart_count}")
    return " ".join(p.strip() for p in parts)


def _log_tail(core: client.CoreV1Api, pod: Any, container: str) -> str:
    try:
        text: str = call(core.read_namespaced_pod_log, pod.metadata.name, pod.metadata.namespace,
                         container=container, tail_lines=LOG_TAIL_LINES, _request_timeout=10)
    except Exception as exc:
        return f"(no log: {short(exc)})"
    return text.rstrip() or "(empty log)"


def _gpus_in_use(core: client.CoreV1Api) -> dict[str, list[tuple[str, int]]]:
    """Per node, the pods holding GPUs: a busy cluster is reported as busy, not as broken."""
    try:
        pods: list[Any] = call(core.list_pod_for_all_namespaces,
                               field_selector="status.phase!=Succeeded,status.phase!=Failed").items
    except Exception:
        return {}
    users: dict[str, list[tuple[str, int]]] = {}
    for pod in pods:
        wanted = sum(int(str((c.resources.limits or {}).get(gpus.GPU_RESOURCE, 0)))
                     for c in pod.spec.containers if c.resources)
        if wanted and pod.spec.node_name:
            users.setdefault(pod.spec.node_name, []).append(
                (f"{pod.metadata.namespace}/{pod.metadata.name}", wanted))
    return users


def _node_lines(core: client.CoreV1Api) -> list[str]:
    try:
        nodes = call(core.list_node).items
    except Exception as exc:
        return [f"(could not list nodes: {short(exc)})"]
    in_use = _gpus_in_use(core)
    lines = []
    for node in find_gpu_nodes(nodes):
        taints = ",".join(f"{k}={v}:{e}" if v else f"{k}:{e}" for k, v, e in node.taints) or "-"
        users = in_use.get(node.name, [])
        lines.append(f"{node.name}: {node.capacity} / {node.allocatable} "
                     f"in use {sum(n for _, n in users)}"
                     + (f" by {', '.join(p for p, _ in users[:5])}" if users else "") + " "
                     f"product={node.labels.get(gpus.PRODUCT_LABEL, '-')} "
                     f"size={node.labels.get(gpus.INSTANCE_TYPE_LABEL, '-')} taints={taints} "
                     f"ready={node.ready}")
    return lines or ["(no GPU node found)"]
