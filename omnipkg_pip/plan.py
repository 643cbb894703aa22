"""Pure logic: from pip's installation report and the main environment, what goes where.

No I/O here. An item of pip's report whose name is already installed in the main
environment is a change to main (pip lists only what it would install). A root
requirement whose closure contains such a change becomes a bubble; the others go
to main, where they disturb nothing. ``--strategy latest`` is the opposite: the
roots go to main and every version they replace is kept as a bubble.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement

from omnipkg_hook.store import normalize

__all__ = ["ReportItem", "Plan", "items_from_report", "closure", "plan_install"]


@dataclass(frozen=True)
class ReportItem:
    name: str
    version: str
    requested: bool
    requires_dist: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    url: str | None = None  # only for direct (URL / path) requirements
    editable: bool = False  # -e PATH: only ever installed into main

    def requirement(self) -> str:
        """The exact requirement that reproduces this item."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        if self.url:
            return f"{self.name}{extras} @ {self.url}"
        return f"{self.name}{extras}=={self.version}"


def items_from_report(report: dict) -> dict[str, ReportItem]:
    """pip's ``--report`` JSON -> ``{name: ReportItem}``."""
    items = {}
    for entry in report.get("install", []):
        meta = entry["metadata"]
        name = normalize(meta["name"])
        items[name] = ReportItem(
            name=name,
            version=meta["version"],
            requested=bool(entry.get("requested")),
            requires_dist=tuple(meta.get("requires_dist") or ()),
            extras=tuple(entry.get("requested_extras") or ()),
            url=entry["download_info"]["url"] if entry.get("is_direct") else None,
            editable=bool(entry.get("is_direct") and (entry["download_info"].get("dir_info") or {}).get("editable")),
        )
    return items


def closure(root: ReportItem, items: dict[str, ReportItem], env: dict) -> set[str]:
    """Names reachable from ``root`` through the report's items (markers evaluated)."""
    seen: dict[str, set] = {}
    queue = [(root.name, set(root.extras))]
    while queue:
        name, extras = queue.pop()
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        item = items.get(name)
        if item is None:  # satisfied by what is installed: not part of the change
            continue
        for line in item.requires_dist:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in seen[name] | {""}
            ):
                continue
            queue.append((normalize(req.name), set(req.extras)))
    return {n for n in seen if n in items}


@dataclass
class Plan:
    to_main: list[ReportItem] = field(default_factory=list)
    to_bubble: list[tuple[ReportItem, str]] = field(default_factory=list)
    # strategy "latest": versions main has now that the install replaces -> kept as bubbles
    keep_as_bubble: list[tuple[str, str]] = field(default_factory=list)
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)


def plan_install(
    items: dict[str, ReportItem],
    installed: dict[str, str],
    env: dict,
    *,
    force_bubble: bool = False,
    strategy: str = "stable",
) -> Plan:
    """Decide, per requested root, main or bubble. ``installed`` is main's ``{name: version}``."""
    plan = Plan()
    plan.changes = {n: (installed[n], it.version) for n, it in items.items() if n in installed}
    for root in (it for it in items.values() if it.requested):
        touched = sorted(closure(root, items, env) & plan.changes.keys())
        if strategy == "latest" and not force_bubble:
            plan.to_main.append(root)
            continue
        if force_bubble:
            plan.to_bubble.append((root, "--bubble"))
        elif touched:
            what = ", ".join(f"{n} {plan.changes[n][0]} -> {plan.changes[n][1]}" for n in touched)
            plan.to_bubble.append((root, f"would change main: {what}"))
        else:
            plan.to_main.append(root)
    if strategy == "latest" and not force_bubble:
        plan.keep_as_bubble = [(n, old) for n, (old, _new) in sorted(plan.changes.items())]
    return plan
