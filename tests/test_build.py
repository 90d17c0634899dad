import datetime
import hashlib
import json
import re

import pytest
import yaml
from gitlab_cfn.compile import compiler, config
from gitlab_cfn.errors import ConfigError

PRODUCT = ["main", "network", "security-groups", "storage", "database", "cache", "bastion", "logs", "gitaly",
           "app",
           "monitoring", "backup", "dns"]
ALL = PRODUCT + ["service-catalog"]  # the stack's templates, then the portfolio


def test_writes_the_product_templates_the_portfolio_and_a_matching_manifest(tmp_path):
    out = tmp_path / "build"
    manifest = compiler.write_build(config.BuildConfig(), out)
    assert sorted(p.name for p in (out / "templates").iterdir()) == sorted(f"{n}.template.yaml" for n in ALL)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert list(manifest["templates"]) == ALL
    assert list(compiler.product_entries(manifest)) == PRODUCT
    for tier, entry in manifest["templates"].items():
        data = (out / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        template = yaml.safe_load(data)
        assert entry["resources"] == len(template["Resources"])
        assert entry["parameters"] == sorted(template.get("Parameters", {}))
        assert entry["outputs"] == sorted(template.get("Outputs", {}))


def test_two_builds_are_byte_identical(tmp_path):
    cfg = config.from_dict({"az_count": 3})
    compiler.write_build(cfg, tmp_path / "a")
    compiler.write_build(cfg, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_failed_build_leaves_the_previous_one_untouched(tmp_path, monkeypatch):
    out = tmp_path / "build"
    compiler.write_build(config.BuildConfig(), out)
    before = _snapshot(out)

    def explode(self, *args, **kwargs):
        raise OSError("disk full")

    # Fail half-way through writing templates.
    monkeypatch.setattr(compiler.Path, "write_text", explode)
    with pytest.raises(OSError, match="disk full"):
        compiler.write_build(config.from_dict({"az_count": 3}), out)
    monkeypatch.undo()
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]  # no staging folder left behind


def test_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and holds no manifest.json"):
        compiler.write_build(config.BuildConfig(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_no_secret_is_a_parameter_and_no_timestamp_is_written(tmp_path):
    compiler.write_build(config.from_dict({"az_count": 3}), tmp_path / "b")
    for path in (tmp_path / "b").rglob("*.yaml"):
        template = yaml.safe_load(path.read_text())
        for name in template.get("Parameters", {}):
            if name.endswith("SecretArn"):
                continue  # where a secret is, never what it holds
            assert not any(word in name.lower() for word in ("password", "token", "secret")), (path.name, name)
    text = "".join(p.read_text() for p in (tmp_path / "b").rglob("*") if p.is_file() and p.suffix != ".gz")
    # No date or time of any year, in any of the usual forms (ISO 8601, RFC 2822 / HTTP dates).
    stamps = re.findall(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d(?:[T ][0-2]\d:[0-5]\d)?\b"
                        r"|\b[0-2]\d:[0-5]\d:[0-5]\d\b"
                        r"|\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b",
                        text)
    # The two that are versions of a format, not times: CloudFormation's and IAM's.
    assert set(stamps) <= {"2010-09-09", "2012-10-17"}, sorted(set(stamps))
    assert datetime.date.today().isoformat() not in text
