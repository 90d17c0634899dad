"""taskcat.yml is valid for taskcat, and points at what the build writes."""

import json
from pathlib import Path

import jsonschema
import taskcat
import yaml

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


# taskcat test -> the build config of its template's folder.
VARIANTS = {"build": None, "build-three-az": "configs/three-az.yaml", "build-no-bastion": "configs/no-bastion.yaml",
            "build-3k": "configs/size-3k.yaml"}


def test_the_matrix_covers_what_the_issue_asks():
    tests = _config()["tests"]
    assert len(tests["default-2az"]["regions"]) >= 4
    assert len(tests["three-az"]["regions"]) >= 2
    assert tests["three-az"]["parameters"]["AvailabilityZones"] == "$[taskcat_genaz_3]"
    assert "no-bastion" in tests
    # A real-AWS test of a Gitaly Cluster size, over three AZs.
    assert tests["size-3k"]["template"] == "build-3k/templates/main.template.yaml"
    assert tests["size-3k"]["parameters"]["AvailabilityZones"] == "$[taskcat_genaz_3]"
    assert tests["service-catalog"]["template"] == "build/templates/service-catalog.template.yaml"
    assert (ROOT / ".taskcat.yml").resolve() == (ROOT / "taskcat.yml").resolve()


def test_every_test_gets_exactly_the_parameters_its_build_needs(tmp_path):
    from gitlab_cfn.compile import compiler, config

    cfg = _config()
    for name, test in cfg["tests"].items():
        folder = test["template"].split("/")[0]
        assert folder in VARIANTS, name
        built = tmp_path / folder
        compiler.write_build(config.load(ROOT / VARIANTS[folder]) if VARIANTS[folder] else config.BuildConfig(), built)
        main = yaml.safe_load((tmp_path / test["template"]).read_text())["Parameters"]
        given = {**cfg["project"]["parameters"], **test.get("parameters", {})}
        # taskcat passes a project parameter only to templates that declare it.
        required = {n for n, d in main.items() if "Default" not in d}
        assert required <= set(given), (name, required - set(given))
        assert set(test.get("parameters", {})) <= set(main), name
        assert given["TemplateKeyPrefix"] == f"$[taskcat_project_name]/{folder}/", name


def test_no_test_parameter_is_shadowed_by_a_project_parameter():
    """taskcat gives a project parameter precedence over a test's parameter of the same name
    (its own schema: "parameters provided in global config take precedence"): a test's value
    there would be ignored, as the key prefixes of the three-AZ and no-bastion tests once were."""
    from taskcat._dataclasses import BaseConfig

    cfg = _config()
    for name, test in cfg["tests"].items():
        assert set(test.get("parameters", {})) & set(cfg["project"]["parameters"]) == set(), name
    # What taskcat itself makes of the file: every test keeps its own key prefix.
    merged = BaseConfig.from_dict({k: v for k, v in cfg.items()})
    for name, test in merged.tests.items():
        folder = cfg["tests"][name]["template"].split("/")[0]
        assert test.parameters["TemplateKeyPrefix"] == f"$[taskcat_project_name]/{folder}/", name


def test_the_servers_find_their_boot_bundle_where_taskcat_uploads_it(tmp_path):
    """taskcat uploads the project folder under <project name>/; the templates look for the
    bundle at <TemplateKeyPrefix>scripts/boot-<sha256>.tar.gz: the same object."""
    from gitlab_cfn.compile import compiler, config

    cfg = _config()
    project = cfg["project"]["name"]
    for name, test in cfg["tests"].items():
        folder = test["template"].split("/")[0]
        manifest = compiler.write_build(
            config.load(ROOT / VARIANTS[folder]) if VARIANTS[folder] else config.BuildConfig(), tmp_path / folder)
        (entry,) = manifest["files"].values()
        assert (tmp_path / folder / entry["path"]).is_file()
        uploaded = f"{project}/{folder}/{entry['path']}"
        prefix = {**cfg["project"]["parameters"], **test.get("parameters", {})}["TemplateKeyPrefix"]
        looked_up = prefix.replace("$[taskcat_project_name]", project) + entry["path"]
        assert looked_up == uploaded, name
        app = (tmp_path / folder / "templates" / "app.template.yaml").read_text()
        assert entry["sha256"] in app and "${TemplateKeyPrefix}" + entry["path"] in app
