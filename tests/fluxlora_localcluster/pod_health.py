"""Why a pod is not doing its work, in the words `kubectl describe pod` would use: the demo
checks the operator's and the gateway's pods with it instead of trusting `helm install --wait`
(which reports a release `deployed` while its pod cannot start)."""

# Waiting reasons a pod recovers from by itself; any other (CrashLoopBackOff, ErrImagePull,
# CreateContainerConfigError, ...) needs a person.
STARTING = {"ContainerCreating", "PodInitializing"}


def problem(pod: dict) -> str | None:
    """What stops the pod, in one line; None while it runs or is still starting."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase in ("Failed", "Succeeded"):
        return f"{phase}: {status.get('reason') or 'its container exited'}"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "terminated" in state:
            return f"container {container['name']} exited ({state['terminated'].get('reason')})"
        waiting = state.get("waiting") or {}
        if waiting and waiting.get("reason") not in STARTING:
            return f"container {container['name']} is waiting: {waiting.get('reason')}"
        if container.get("restartCount"):
            return f"container {container['name']} restarted {container['restartCount']} times"
    return None


def describe(pod: dict, log_tail: str = "") -> str:
    """The pod's name, phase, each container's state with its message, and its last log lines
    (unless the message is those lines: a container that writes no termination message gets its
    log's tail as one)."""
    meta, status = pod["metadata"], pod.get("status") or {}
    lines = [f"pod {meta['namespace']}/{meta['name']}: {status.get('phase') or 'Pending'}"]
    messages = []
    for container in status.get("containerStatuses") or []:
        # The current state, then the last one: a restarted container's exit is its last state.
        for label, states in (("", "state"), ("last ", "lastState")):
            for state, detail in (container.get(states) or {}).items():
                facts = ", ".join(
                    f"{key} {detail[key]}" for key in ("reason", "exitCode") if key in detail
                )
                lines.append(f"  container {container['name']}: {label}{state} ({facts})")
                if detail.get("message"):
                    messages.append(detail["message"].strip())
                    lines += [
                        "  message:",
                        *(f"    {line}" for line in detail["message"].splitlines()),
                    ]
    if log_tail.strip() and log_tail.strip() not in messages:
        lines += ["  last log lines:", *("    " + line for line in log_tail.splitlines())]
    return "\n".join(lines)
