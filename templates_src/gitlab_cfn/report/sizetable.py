"""The monthly estimate and the modelled create time of every size, for the docs: each size
(``compile.sizes.NAMES``) with 2 and 3 AZs is compiled in memory, priced with the snapshot for
each region that has every figure it needs, and walked by the deploy-time model. Nothing here is
written per size: a new size appears in the table as soon as it is in ``sizes.NAMES``.

``docs/estimate.md`` holds the output of :func:`cost_markdown` and :func:`time_markdown`;
``tests/test_docs.py`` regenerates both and compares, so the doc cannot drift from the code.
Print them with ``python -m gitlab_cfn.report.sizetable``.
"""

from __future__ import annotations

from gitlab_cfn.compile import compiler, config, sizes
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.report import deploytime, estimate, prices, stack

AZS = (2, 3)


def build(size: str, az: int) -> stack.Stack:
    return stack.tree(compiler.compile_data(config.from_dict({"size": size, "az_count": az})))


def builds() -> dict[tuple[str, int], stack.Stack]:
    return {(size, az): build(size, az) for size in sizes.NAMES for az in AZS}


class _Unpriced(prices.Prices):
    """The snapshot of one region, noting every figure it lacks instead of stopping at the first
    (the estimate made with it is discarded: only the list of what is missing is kept)."""

    def __init__(self, region: str, snapshot: dict):
        super().__init__(region, snapshot)
        self.missing: set[str] = set()

    def get(self, table: str, key: str | None = None, *, field: str = "") -> prices.Price:
        try:
            return super().get(table, key, field=field)
        except ConfigError:
            self.missing.add(f"{table} {key}" if key else table)
            return prices.Price(0.0, "")


def regions(snapshot: dict) -> list[str]:
    """The snapshot's regions, us-east-1 (the default) first."""
    return sorted(snapshot["regions"], key=lambda r: (r != "us-east-1", r))


def costs(trees: dict[tuple[str, int], stack.Stack], snapshot: dict | None = None) \
        -> dict[str, dict[tuple[str, int], estimate.Estimate | list[str]]]:
    """Per region of the snapshot, per (size, AZs): the estimate, or the figures the region lacks
    for that build (``estimate`` refuses it, naming the first)."""
    snap = snapshot if snapshot is not None else prices.load_snapshot()
    assumptions = estimate.load_assumptions()
    out: dict = {}
    for region in regions(snap):
        table = prices.Prices(region, snap)
        row: dict = {}
        for key, root in trees.items():
            try:
                row[key] = estimate.estimate(root, table, assumptions)
            except ConfigError:
                probe = _Unpriced(region, snap)
                estimate.estimate(root, probe, assumptions)
                row[key] = sorted(probe.missing)
        out[region] = row
    return out


def _cell(result: estimate.Estimate | list[str]) -> str:
    if isinstance(result, list):
        return "no price"
    return f"{estimate.money(result.total)} / {estimate.money(result.total_max)}"


def region_markdown(table: dict) -> str:
    """One row per region of the snapshot: the default build (poc, 2 AZs) at ASG minimum / maximum,
    and how many of the size x AZ builds the region prices."""
    lines = ["| region | default build (poc, 2 AZs), ASG minimum / maximum | size x AZ builds priced |",
             "|---|---|---|"]
    for region, row in table.items():
        priced = sum(not isinstance(v, list) for v in row.values())
        lines.append(f"| {region} | {_cell(row[('poc', 2)])} | {priced} of {len(row)} |")
    return "\n".join(lines)


def cost_markdown(trees: dict | None = None, snapshot: dict | None = None) -> str:
    """One row per size and AZ count, one column per region that prices at least one of them
    (ASG minimum / ASG maximum); then, per region, the figures it still lacks and for which sizes."""
    trees = trees if trees is not None else builds()
    table = costs(trees, snapshot)
    priced = [r for r in table if any(not isinstance(v, list) for v in table[r].values())]
    lines = ["| size | AZs | " + " | ".join(priced) + " |", "|---|---|" + "---|" * len(priced)]
    for size, az in trees:
        lines.append(f"| {size} | {az} | " + " | ".join(_cell(table[r][(size, az)]) for r in priced) + " |")
    if ("poc", 2) in trees:
        lines += ["", "Per region, the default build:", "", region_markdown(table)]
    gaps = []
    for region, row in table.items():
        need: dict[str, list[str]] = {}
        for (size, _), result in row.items():
            for item in result if isinstance(result, list) else []:
                if size not in need.setdefault(item, []):
                    need[item].append(size)
        if need:
            every = list(dict.fromkeys(s for s, _ in trees))
            items = [f"`{item}`" + ("" if sizes_ == every else f" ({', '.join(sizes_)})")
                     for item, sizes_ in sorted(need.items())]
            gaps.append(f"- {region}: " + ", ".join(items))
    if gaps:
        lines += ["", "Not priced (no public source of the figure was found; `estimate --region` refuses "
                      "these builds naming the first; sizes in brackets where not every size needs it):", ""]
        lines += gaps
    return "\n".join(lines)


def time_markdown(trees: dict | None = None) -> str:
    """The modelled create time (and its upper bound at the CreationPolicy timeouts) per size."""
    trees = trees if trees is not None else builds()
    lines = ["| size | AZs | create, modelled | upper bound (timeouts) | slowest step on the critical path |",
             "|---|---|---|---|---|"]
    for (size, az), root in trees.items():
        res = deploytime.Model().run(root)
        upper = deploytime.Model(upper_bound=True).run(root)
        step = max(res.path, key=lambda s: s.end - s.start if s.type != "AWS::CloudFormation::Stack" else -1)
        lines.append(f"| {size} | {az} | {res.total / 60:.1f} min | {upper.total / 60:.1f} min | "
                     f"{step.tier}/{step.resource} {(step.end - step.start) / 60:.1f} min |")
    return "\n".join(lines)


if __name__ == "__main__":
    trees = builds()
    print(cost_markdown(trees))
    print()
    print(time_markdown(trees))
