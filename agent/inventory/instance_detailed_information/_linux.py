"""From /proc/cpuinfo (model name, cpu MHz, physical id, core id) and the logical CPU count."""

from __future__ import annotations

from agent.inventory.base import CollectContext, CollectError, Item


def collect(ctx: CollectContext) -> list[Item]:
    path = ctx.path("/proc/cpuinfo")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CollectError(f"cannot read {path}: {exc.strerror}") from None
    return [from_cpuinfo(text)]


def from_cpuinfo(text: str) -> Item:
    processors: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                processors.append(current)
                current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    if current:
        processors.append(current)
    processors = [p for p in processors if "processor" in p]
    if not processors:
        raise CollectError("/proc/cpuinfo lists no processor")
    first = processors[0]
    sockets = {p.get("physical id", "0") for p in processors}
    cores = {(p.get("physical id", "0"), p.get("core id", p["processor"])) for p in processors}
    item: Item = {
        "CPUModel": first.get("model name") or first.get("Processor") or first.get("cpu", ""),
        "CPUs": str(len(processors)),
        "CPUSockets": str(len(sockets)),
        "CPUCores": str(len(cores)),
        "CPUHyperThreadEnabled": "true" if len(processors) > len(cores) else "false",
    }
    mhz = first.get("cpu MHz")
    if mhz:
        item["CPUSpeedMHz"] = str(round(float(mhz)))
    return {k: v for k, v in item.items() if v}
