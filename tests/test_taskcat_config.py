"""taskcat.yml is valid for taskcat, and points at what the build writes."""

import json
from pathlib import Path

import jsonschema
import taskcat
import yaml

from conftest import templates_for

ROOT = Path(__file__).resolve().parent.parent


def _config():
    return yaml.safe_load((ROOT / "taskcat.yml").read_text())


def test_matches_taskcats_own_schema():
    schema = json.loads((Path(taskcat.__file__).parent / "cfg" / "config_schema.json").read_text())
    jsonschema.validate(_config(), schema)


def test_schema_check_can_fail():
    schema = json.loads((Path(taskcat.__file__).parent / "cfg" / "config_schema.json").read_text())
    bad = _config()
    bad["tests"]["default-2az"]["regoins"] = ["us-east-1"]
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as err:
        assert "regoins" in err.message
    else:
        raise AssertionError("a misspelt key passed taskcat's schema")


def test_every_parameter_given_exists_and_every_required_one_is_given():
    cfg = _config()
    main = templates_for({})["main"]["Parameters"]
    for name, test in cfg["tests"].items():
        given = {**cfg["project"]["parameters"], **test.get("parameters", {})}
        assert set(given) <= set(main), name
        required = {n for n, d in main.items() if "Default" not in d}
        assert required <= set(given), (name, required - set(given))
        assert (ROOT / test["template"]).parent.name == "templates"
        assert len(test["regions"]) >= 4
