"""What to show when a check fails: events, pod states, log tails, node GPU resources.

Collected only on failure and never raising: a diagnostics error must not hide the failure it
was meant to explain. Every field of every object may be missing (None): partial objects are
described with what they have.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from gpu_conformance import gpus, kapi
from gpu_conformance.errors import one_line
from gpu_conformance.gpu_nodes import find_gpu_nodes, format_taint, quantity
from gpu_conformance.hints import likely_causes
from gpu_conformance.kube import call

MAX_EVENTS = 25
MAX_PODS = 15
LOG_TAIL_LINES = 15
#: the terminal and JUnit text is cut here; the artifacts keep everything
MAX_CHARS = 12_000
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _when(event: Any) -> datetime:
    for attr in ("last_timestamp", "event_time", "first_timestamp"):
        value = getattr(event, attr, None)
        if value:
            return value if isinstance(value, datetime) else _EPOCH
    meta = getattr(event, "metadata", None)
    created = getattr(meta, "creation_timestamp", None)
    return created if isinstance(created, datetime) else _EPOCH


def _section(title: str, lines: Iterable[str]) -> list[str]:
    body = list(lines)
    return [f"--- {title} ---", *(body or ["(none)"])]


def _event_line(event: Any) -> str:
    involved = getattr(event, "involved_object", None)
    what = f"{getattr(involved, 'kind', None) or '?'}/{getattr(involved, 'name', None) or '?'}"
    when = _when(event)
    stamp = f"{when:%H:%M:%S}" if when != _EPOCH else "--:--:--"
    return (f"{stamp} {getattr(event, 'type', None) or '?'} {getattr(event, 'reason', None) or '?'} "
            f"{what}: {(getattr(event, 'message', None) or '').strip()}")


def collect(api: client.ApiClient, namespaces: Iterable[str], *, label_selector: str | None = None,
            with_logs: bool = True, limit: int | None = MAX_CHARS,
            max_pods: int | None = MAX_PODS, max_events: int | None = MAX_EVENTS) -> str:
    """A human-readable dump of the namespaces' state and the GPU nodes (``limit`` None: whole)."""
    core = kapi.CoreV1Api(api)
    out: list[str] = []
    texts: list[str] = []
    for ns in dict.fromkeys(namespaces):
        try:
            events = sorted(call(core.list_namespaced_event, ns).items or [], key=_when)
            events = events[-max_events:] if max_events else events
            lines = [_event_line(e) for e in events]
            texts += lines
            out += _section(f"events in {ns} (oldest first)", lines)
            kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
            pods: list[Any] = list(call(core.list_namespaced_pod, ns, **kwargs).items or [])
            pods = pods[:max_pods] if max_pods else pods
            out += _section(f"pods in {ns}", (pod_line(p) for p in pods))
            texts += [pod_line(p) for p in pods]
            if with_logs:
                # healthy long-running pods (plugin pods that are Ready) tell nothing: skip them
                for pod in [p for p in pods if not _healthy_running(p)]:
                    spec = getattr(pod, "spec", None)
                    for container in getattr(spec, "containers", None) or []:
                        tail = _log_tail(core, pod, container.name)
                        texts.append(tail)
                        out += _section(f"log tail {ns}/{_name(pod)}/{container.name}",
                                        tail.splitlines())
        except Exception as exc:  # diagnostics never mask the failure
            out.append(f"(could not read namespace {ns}: {one_line(exc)})")
    out += _section("GPU nodes (nvidia.com/gpu capacity / allocatable, in use)", _node_lines(core))
    causes = likely_causes(*texts)
    if causes:
        out += _section("likely cause", causes)
    text = "\n".join(out)
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"\n... (diagnostics cut at {limit} characters; the report's " \
                              "artifacts hold all of it)"
    return text


def _name(obj: Any) -> str:
    return str(getattr(getattr(obj, "metadata", None), "name", None) or "?")


def _healthy_running(pod: Any) -> bool:
    status = getattr(pod, "status", None)
    return bool(status and status.phase == "Running" and all(
        cs.ready for cs in status.container_statuses or []))


def pod_line(pod: Any) -> str:
    status, spec = getattr(pod, "status", None), getattr(pod, "spec", None)
    parts = [f"{_name(pod)} node={getattr(spec, 'node_name', None) or '-'} "
             f"phase={getattr(status, 'phase', None) or '?'}"]
    for cond in getattr(status, "conditions", None) or []:
        if cond.status != "True" and cond.reason:
            parts.append(f"{cond.type}={cond.status}({cond.reason}: {cond.message or ''})")
    for cs in getattr(status, "container_statuses", None) or []:
        state = cs.state
        if state and state.waiting:
            parts.append(f"{cs.name} waiting {state.waiting.reason}: {state.waiting.message or ''}")
        elif state and state.terminated:
            parts.append(f"{cs.name} terminated {state.terminated.reason} "
                         f"exit={state.terminated.exit_code}")
        parts.append(f"restarts={cs.restart_count}")
    return " ".join(p.strip() for p in parts)


def _log_tail(core: kapi.CoreV1Api, pod: Any, container: str) -> str:
    try:
        text = call(core.read_namespaced_pod_log, _name(pod),
                    getattr(pod.metadata, "namespace", None), container=container,
                    tail_lines=LOG_TAIL_LINES, _request_timeout=10)
    except Exception as exc:
        return f"(no log: {one_line(exc)})"
    return (text if isinstance(text, str) else "").rstrip() or "(empty log)"


def gpus_in_use(core: kapi.CoreV1Api) -> dict[str, list[tuple[str, int]]]:
    """Per node, the pods holding GPUs: a busy cluster is reported as busy, not as broken."""
    try:
        pods: list[Any] = call(core.list_pod_for_all_namespaces,
                               field_selector="status.phase!=Succeeded,status.phase!=Failed").items
    except Exception:
        return {}
    return gpu_holders(pods)


def _container_gpus(container: Any) -> int:
    """A container's nvidia.com/gpu request (the API server defaults an extended resource's
    request to its limit; an object built by hand may carry the limit only)."""
    resources = getattr(container, "resources", None)
    requests = getattr(resources, "requests", None) or {}
    limits = getattr(resources, "limits", None) or {}
    return quantity(requests.get(gpus.GPU_RESOURCE, limits.get(gpus.GPU_RESOURCE, 0)))


def pod_gpus(pod: Any) -> int:
    """The GPUs the scheduler reserves for ``pod``, as Kubernetes' PodRequests computes them:
    app containers plus sidecars (restartable init containers), or the largest init container
    with the sidecars started before it when that is more, plus the RuntimeClass overhead."""
    spec = getattr(pod, "spec", None)
    total = sum(_container_gpus(c) for c in getattr(spec, "containers", None) or [])
    sidecars = init_peak = 0
    for c in getattr(spec, "init_containers", None) or []:
        if getattr(c, "restart_policy", None) == "Always":
            sidecars += _container_gpus(c)
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, _container_gpus(c) + sidecars)
    overhead = quantity((getattr(spec, "overhead", None) or {}).get(gpus.GPU_RESOURCE, 0))
    return max(total + sidecars, init_peak) + overhead


def gpu_holders(pods: Iterable[Any]) -> dict[str, list[tuple[str, int]]]:
    users: dict[str, list[tuple[str, int]]] = {}
    for pod in pods:
        wanted = pod_gpus(pod)
        node = getattr(getattr(pod, "spec", None), "node_name", None)
        if wanted and node:
            meta = getattr(pod, "metadata", None)
            users.setdefault(node, []).append(
                (f"{getattr(meta, 'namespace', None)}/{getattr(meta, 'name', None)}", wanted))
    return users


def _node_lines(core: kapi.CoreV1Api) -> list[str]:
    try:
        nodes = call(core.list_node).items or []
    except Exception as exc:
        return [f"(could not list nodes: {one_line(exc)})"]
    in_use = gpus_in_use(core)
    lines = []
    for node in find_gpu_nodes(nodes):
        taints = ",".join(format_taint(t) for t in node.taints) or "-"
        users = in_use.get(node.name, [])
        lines.append(f"{node.name}: {node.capacity} / {node.allocatable} "
                     f"in use {sum(n for _, n in users)}"
                     + (f" by {', '.join(p for p, _ in users[:5])}" if users else "") + " "
                     f"product={node.labels.get(gpus.PRODUCT_LABEL, '-')} "
                     f"size={node.labels.get(gpus.INSTANCE_TYPE_LABEL, '-')} taints={taints} "
                     f"ready={node.ready}")
    return lines or ["(no GPU node found)"]
