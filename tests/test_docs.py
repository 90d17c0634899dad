"""The docs stay true to the build: every resource they name exists, every config key is documented."""

import re
from pathlib import Path

from conftest import templates_for
from gitlab_cfn.compile import config

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(main|network|security-groups|storage|database|cache|bastion|logs|gitaly|app|monitoring|backup|dns|service-catalog):([A-Z][A-Za-z0-9]+)`")


def test_every_resource_named_in_the_architecture_map_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = REFERENCE.findall(text)
    assert len(named) > 80
    built = templates_for({})
    missing = [f"{tier}:{lid}" for tier, lid in named
               if lid not in built.get(tier, {}).get("Resources", {})]
    assert missing == []


def test_the_map_covers_every_resource_of_the_default_build():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(REFERENCE.findall(text))
    built = templates_for({})
    for tier in built:
        for lid in built[tier]["Resources"]:
            assert (tier, lid) in named, f"{tier}:{lid} is not in docs/architecture.md"


def test_every_config_key_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for key, default, _ in config.describe():
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert f"| `{key}` | `{shown}` |" in text, key


def test_quick_start_is_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh|shell|bash)?\n(.*?)```", section, re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert commands == ["make build", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


# -- docs/estimate.md: the per-size cost and create-time tables are regenerated, not copied -------

def _size_table_drift(text: str, trees: dict, snapshot: dict | None = None) -> list[str]:
    """The blocks of docs/estimate.md that differ from what report/sizetable.py writes now."""
    from gitlab_cfn.report import sizetable

    wanted = {"cost": sizetable.cost_markdown(trees, snapshot), "time": sizetable.time_markdown(trees)}
    drift = []
    for name, table in wanted.items():
        found = re.search(rf"<!-- sizetable:{name} -->\n(.*?)\n<!-- /sizetable:{name} -->", text, re.S)
        if found is None or found.group(1) != table:
            drift.append(name)
    return drift


def test_the_per_size_estimates_in_the_docs_are_regenerated_from_the_builds():
    import copy

    from gitlab_cfn.compile import sizes
    from gitlab_cfn.report import prices, sizetable

    text = (ROOT / "docs" / "estimate.md").read_text()
    trees = sizetable.builds()
    assert {size for size, _ in trees} == set(sizes.NAMES)
    assert _size_table_drift(text, trees) == []
    # The check fails when a figure of the doc is no longer what the code and snapshot give:
    # a changed price (the doc left as it is) and a changed figure in the doc.
    snapshot = copy.deepcopy(prices.load_snapshot())
    for table in snapshot["regions"].values():
        table["ec2_hour"]["c5.xlarge"]["price"] += 0.01
    assert _size_table_drift(text, trees, snapshot) == ["cost"]
    block = text.split("<!-- sizetable:time -->", 1)[1]
    first = re.search(r" (\d+\.\d) min \|", block).group(0)
    other = " 0.5 min |" if first != " 0.5 min |" else " 0.6 min |"
    edited = text.replace(first, other, 1)
    assert edited != text and _size_table_drift(edited, trees) == ["time"]


def test_the_estimates_the_docs_quote_are_what_estimate_gives(tmp_path, capsys):
    """The builds table of docs/estimate.md and the README's figure are the command's own output
    (they once kept a figure from before the operations tiers were added)."""
    import shutil

    from gitlab_cfn.cli import main

    text = (ROOT / "docs" / "estimate.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| `gitlab-cfn estimate( --config [^`]+)?` \| (\$[\d,.]+) \| (\$[\d,.]+) \|$",
                      text, flags=re.M)
    assert len(rows) == 3, rows
    for option, low, high in rows:
        out = tmp_path / f"build{len(option)}"
        config_args = ["--config", str(ROOT / option.split()[-1])] if option else []
        assert main(["build", "-q", *config_args, "--out", str(out)]) == 0
        capsys.readouterr()
        assert main(["estimate", "--build", str(out)]) == 0
        total = re.search(r"^TOTAL per month: (\$[\d,.]+) .*?, (\$[\d,.]+) at maximum", capsys.readouterr().out, re.M)
        assert (low, high) == total.groups(), option or "default"
        if not option:
            readme = (ROOT / "README.md").read_text()
            (quoted,) = re.findall(r"about \$([\d,]+) a month on demand", readme)
            assert quoted == f"{round(float(low[1:].replace(',', ''))):,}"
        shutil.rmtree(out)
