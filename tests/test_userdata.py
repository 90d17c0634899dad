"""User data as instances receive it: preamble + bootstrap, and the scripts of the boot
bundle as the bootstrap runs them, checked with bash -n, shellcheck, size."""

import re
import subprocess
from pathlib import Path

import pytest
from conftest import props, resources, templates_for
from gitlab_cfn.compile import userdata
from support import shellcheck

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SECRET_VALUES = ["s3cr3tDbPassw0rd", "redisAuthT0ken", "gitalyT0ken", "shellT0ken", "r00tPassw0rd"]


def sample(name: str) -> str:
    """A long, realistic value for each kind of preamble variable."""
    if name.endswith("_ARN"):
        return f"arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:{name.title().replace('_', '')}-AbCdEfGhIjKl-Ab1Cd2"
    if name.startswith("BUCKET_"):
        return f"gl-{name[7:].lower().replace('_', '-')}-123456789012-ap-southeast-2-0a1b2c3d"
    return {
        "AWS_REGION": "ap-southeast-2",
        "CFN_STACK": "gitlab-production-AppStack-1A2B3C4D5E6F7",
        "GITLAB_DOMAIN": "gitlab.engineering.example.com",
        "VPC_CIDR": "10.0.0.0/16",
        "DB_HOST": "gitlab-production-databasestack-1a2b3c-database-abcdefghijkl.c9akciq32.ap-southeast-2.rds.amazonaws.com",
        "DB_PORT": "5432",
        "DB_NAME": "gitlabhq_production",
        "REDIS_HOST": "master.gi1abc2defgh3ij.abcdef.apse2.cache.amazonaws.com",
        "REDIS_PORT": "6379",
        "GITALY_ADDRESS": "tcp://10.0.1.123:8075",
        "DATA_VOLUME_ID": "vol-0123456789abcdef0",
        "LOG_GROUP_PREFIX": "/gitlab-cfn/gitlab-production/0a1b2c3d",
        "LOG_GROUP_ID": "0a1b2c3d",
        "EMAIL_SENDER": "gitlab@engineering.example.com",
        "GITLAB_VERSION": "18.5.1",
        "GITLAB_EDITION": "ee",
        "BAKE_SOURCE": "gitlab-ami",
        "BOOT_ROLE": "gitlab-app",
        "BUNDLE_BUCKET": "gitlab-cfn-ap-southeast-2-123456789012",
        "BUNDLE_KEY": "gitlab-cfn/gitlab-production/0a1b2c3d4e5f/scripts/boot-" + "0" * 64 + ".tar.gz",
        "BUNDLE_REGION": "ap-southeast-2",
        "BUNDLE_SHA256": "0" * 64,
        "BUNDLE_PARAMETER": "/gitlab-cfn/gitlab-production/gitaly/boot-bundle",
    }[name]


def template_user_data(templates):
    """{role: (variables, literal body)} read back from the built templates."""
    found = {}
    for template in templates.values():
        for name, res in template["Resources"].items():
            p = res.get("Properties", {})
            ud = p.get("UserData") or p.get("LaunchTemplateData", {}).get("UserData")
            if not ud:
                continue
            sub, literal = ud["Fn::Base64"]["Fn::Join"][1]
            head, variables = sub["Fn::Sub"]
            role = re.search(r"user data \(([a-z-]+)\)", head).group(1)
            found.setdefault(role, []).append((name, variables, literal, head))
    return found


ROLES_IN_TEMPLATES = ["bastion", "gitaly", "gitlab-app"]


def _values(role):
    _, variables, _, _ = template_user_data(templates_for({}))[role][0]
    return {name: value if isinstance(value, str) else sample(name) for name, value in variables.items()}


def rendered_user_data(role):
    """The user data an instance of ``role`` receives: the preamble, then the bootstrap."""
    return userdata.render(role, _values(role))


def rendered(role):
    """What the server finally runs: the role's script of the boot bundle with the preamble's
    variables exported (here as one file: the preamble, then the script)."""
    text = rendered_user_data(role)
    head = text[:-len(userdata.script(role))]
    assert head.startswith("#!/bin/bash\n") and "${" not in head
    return head + userdata.body(role)


def test_every_instance_role_has_user_data():
    found = template_user_data(templates_for({}))
    assert sorted(found) == ROLES_IN_TEMPLATES
    assert [n for n, *_ in found["bastion"]] == ["BastionA", "BastionB"]
    assert [n for n, *_ in found["gitaly"]] == ["GitalyInstance"]
    assert [n for n, *_ in found["gitlab-app"]] == ["AppLaunchTemplate"]


@pytest.mark.parametrize("role", ROLES_IN_TEMPLATES)
def test_user_data_is_the_bootstrap_unchanged_and_never_through_sub(role):
    for _, variables, literal, head in template_user_data(templates_for({}))[role]:
        assert literal == userdata.script(role) == (SCRIPTS / "bootstrap.sh").read_text()
        assert head.count("\n") == len(variables) + 2  # shebang, comment, one export per value
        assert variables["BOOT_ROLE"] == role


def _required(script: str, function: str = "require_env") -> set[str]:
    required = set()
    for call in re.findall(function + r" ((?:[A-Z_0-9]+ ?|\\\n\s*)+)", script):
        required |= set(re.findall(r"[A-Z][A-Z0-9_]+", call))
    return required


@pytest.mark.parametrize("role", ROLES_IN_TEMPLATES)
def test_preamble_exports_exactly_what_the_bootstrap_and_the_script_require(role):
    _, variables, _, _ = template_user_data(templates_for({}))[role][0]
    script = (SCRIPTS / userdata.ROLES[role][-1]).read_text()
    required = _required(script)
    if "BUCKET_KINDS" in script:
        kinds = re.search(r"BUCKET_KINDS=\(([^)]*)\)", script).group(1).split()
        required |= {f"BUCKET_{k.upper()}" for k in kinds}
    assert required, role
    if "LOG_GROUP_PREFIX" in required:
        # Put together by lib/cloudwatch.sh from these two (the user data's size).
        assert {"LOG_GROUP_ID", "BUNDLE_PARAMETER"} <= set(variables) and "lib/cloudwatch.sh" in userdata.ROLES[role]
        required = (required - {"LOG_GROUP_PREFIX"}) | {"LOG_GROUP_ID"}
    assert required - {"CFN_RESOURCE"} <= set(variables), required - set(variables)
    assert "CFN_RESOURCE" in variables
    # The bootstrap's own needs: the bundle's location, given directly or through SSM.
    bootstrap = (SCRIPTS / "bootstrap.sh").read_text()
    needs = _required(bootstrap, "boot_require")
    location = {"BUNDLE_BUCKET", "BUNDLE_KEY", "BUNDLE_REGION", "BUNDLE_SHA256"}
    assert location <= needs and {"AWS_REGION", "CFN_STACK", "BOOT_ROLE"} <= needs
    given = set(variables)
    # The parameter, never the bundle's key (it changes with every build's key prefix);
    # the app's launch template also pins the sha256 of its build's bundle.
    assert "BUNDLE_PARAMETER" in given
    assert location & given == ({"BUNDLE_SHA256"} if role == "gitlab-app" else set())
    assert needs - location <= given
    # Exactly: nothing is exported that neither the bootstrap nor the script reads.
    read = required | needs | {"BUNDLE_PARAMETER", "CFN_RESOURCE"}
    read |= {name for name in given if re.search(r"\$\{?" + name + r"\b", script + bootstrap)}
    assert given - read == set()


def _shellcheck_clean(path):
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    shellcheck.assert_clean(path)


@pytest.mark.parametrize("role", ROLES_IN_TEMPLATES + ["bake"])
def test_rendered_user_data_parses_is_shellcheck_clean_and_fits(tmp_path, role):
    if role == "bake":
        text = userdata.render("bake", {n: sample(n) for n in ("AWS_REGION", "GITLAB_VERSION", "GITLAB_EDITION", "BAKE_SOURCE")})
    else:
        text = rendered_user_data(role)
    path = tmp_path / f"{role}.sh"
    path.write_text(text)
    _shellcheck_clean(path)
    assert len(text.encode()) < userdata.MAX_BYTES


@pytest.mark.parametrize("role", ROLES_IN_TEMPLATES)
def test_bundled_scripts_as_run_are_shellcheck_clean(tmp_path, role):
    """What the bootstrap runs: the role's script of the bundle, with the preamble's
    variables exported (checked here as one file: the preamble, then the script)."""
    path = tmp_path / f"{role}.sh"
    path.write_text(rendered(role))
    _shellcheck_clean(path)


def test_worst_case_user_data_fits_with_room_to_grow():
    """The bootstrap is the same for every role: the worst case is the preamble (every value
    at its longest) and the bootstrap, whatever the boot scripts grow to (they are in the bundle)."""
    t = templates_for({})
    sizes = {role: userdata.worst_size(role, entries[0][1]) for role, entries in template_user_data(t).items()}
    print("worst-case user data:", sizes)
    assert max(sizes.values()) < userdata.MAX_BYTES * 2 // 3, sizes
    for role, size in sizes.items():
        assert size < len(userdata.script(role).encode()) + 5000, role   # the preamble stays small
        # What no longer counts: the role's scripts.
        assert userdata.script(role) != userdata.body(role)


def test_shellcheck_gate_can_fail(tmp_path):
    path = tmp_path / "bad.sh"
    text = rendered_user_data("bastion")
    path.write_text(text + "\nrm -rf $UNQUOTED/*\n")
    # Any version: on the line added and nowhere else, SC2086 (an unquoted expansion) and
    # SC2115 (rm of "$VAR/*" with VAR possibly empty).
    line = len((text + "\n").splitlines()) + 1
    assert shellcheck.findings(path) == [("SC2086", line), ("SC2115", line)]
    with pytest.raises(AssertionError, match="SC2086"):
        shellcheck.assert_clean(path)


@pytest.mark.parametrize("variant", [{}, {"az_count": 3, "bastions": False}])
def test_no_secret_or_dynamic_reference_reaches_user_data(variant):
    for role, entries in template_user_data(templates_for(variant)).items():
        for _, variables, literal, head in entries:
            text = str(variables) + literal + head
            assert "resolve:secretsmanager" not in text, role
            assert not [n for n in variables if re.search("PASSWORD|TOKEN|SECRET", n) and not n.endswith("_ARN")], role
    # The secret values themselves never appear in what a server logs or records while it
    # boots with them: test_boot_app.py, which boots with real values in Secrets Manager.


def test_scripts_hold_no_cloudformation_syntax():
    for path in SCRIPTS.rglob("*.sh"):
        text = path.read_text()
        for marker in ("${AWS::", "Fn::", "!Ref ", "!Sub ", "!GetAtt"):
            assert marker not in text, (path.name, marker)


def test_oversized_user_data_is_refused_at_build_time(monkeypatch):
    from gitlab_cfn.compile.userdata import UserDataError
    from troposphere import Ref

    monkeypatch.setattr(userdata, "MAX_BYTES", len(userdata.script("gitaly")) + 100)
    with pytest.raises(UserDataError, match="user data of gitaly may reach .* bytes"):
        userdata.user_data("gitaly", {"AWS_REGION": Ref("AWS::Region"), "DB_SECRET_ARN": Ref("X")})


def test_instances_wait_for_their_boot_signal():
    t = templates_for({})
    asg = t["app"]["Resources"]["AppAutoScalingGroup"]
    # As many signals as servers the group starts with: its MinSize (no DesiredCapacity).
    assert asg["CreationPolicy"]["ResourceSignal"] == {"Count": 2, "Timeout": "PT60M"}
    assert asg["Properties"]["MinSize"] == "2" and "DesiredCapacity" not in asg["Properties"]
    assert asg["CreationPolicy"]["AutoScalingCreationPolicy"] == {"MinSuccessfulInstancesPercent": 100}
    rolling = asg["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True and rolling["PauseTime"] == "PT45M"
    assert t["gitaly"]["Resources"]["GitalyInstance"]["CreationPolicy"]["ResourceSignal"]["Timeout"] == "PT30M"
    for host in ("A", "B"):
        assert t["bastion"]["Resources"][f"Bastion{host}"]["CreationPolicy"]["ResourceSignal"]["Count"] == 1


def test_gitaly_volume_is_attached_with_the_instance():
    gitaly = templates_for({})["gitaly"]
    assert props(gitaly, "GitalyInstance")["Volumes"] == [{"Device": "/dev/sdf", "VolumeId": {"Ref": "GitalyDataVolume"}}]
    assert not resources(gitaly, "AWS::EC2::VolumeAttachment")


def test_bastions_get_a_public_address_at_launch():
    bastion = templates_for({})["bastion"]
    for host, subnet in (("A", "PublicSubnet1Id"), ("B", "PublicSubnet2Id")):
        (eni,) = props(bastion, f"Bastion{host}")["NetworkInterfaces"]
        assert eni["AssociatePublicIpAddress"] is True
        assert eni["SubnetId"] == {"Ref": subnet}
        assert eni["GroupSet"] == [{"Ref": "BastionSecurityGroupId"}]


@pytest.mark.parametrize("bundle_parameter, group_id, expected", [
    ("/gitlab-cfn/gitlab-production/gitlab-app/boot-bundle", "0a1b2c3d", "/gitlab-cfn/gitlab-production/0a1b2c3d"),
    ("/gitlab-cfn/gl/praefect/boot-bundle", "ffff0000", "/gitlab-cfn/gl/ffff0000"),
    # Malformed: nothing is put together, and require_env LOG_GROUP_PREFIX then stops the boot.
    ("/gitlab-cfn/gitlab-production/gitlab-app/boot-bundle", "0A1B2C3D", ""),
    ("/gitlab-cfn/gitlab-production/gitlab-app/boot-bundle", "0a1b2c3d/x", ""),
    ("/other/gitlab-production/gitlab-app/boot-bundle", "0a1b2c3d", ""),
    ("/gitlab-cfn/gitlab-production/boot-bundle", "0a1b2c3d", ""),
    ("", "0a1b2c3d", ""),
])
def test_log_group_prefix_is_put_together_from_the_user_data(bundle_parameter, group_id, expected):
    """The user data carries LOG_GROUP_ID only; lib/cloudwatch.sh prefixes the parent stack's
    name from BUNDLE_PARAMETER, as the logs tier names its groups."""
    env = {"PATH": "/usr/bin:/bin", "BUNDLE_PARAMETER": bundle_parameter, "LOG_GROUP_ID": group_id}
    out = subprocess.run(
        ["bash", "-c", f"source {SCRIPTS}/lib/common.sh; source {SCRIPTS}/lib/cloudwatch.sh; "
                       'printf %s "${LOG_GROUP_PREFIX:-}"'],
        env=env, capture_output=True, text=True, check=True).stdout
    assert out == expected
    if not expected:
        failed = subprocess.run(
            ["bash", "-c", f"source {SCRIPTS}/lib/common.sh; source {SCRIPTS}/lib/cloudwatch.sh; "
                           "require_env LOG_GROUP_PREFIX"], env=env, capture_output=True, text=True)
        assert failed.returncode != 0 and "LOG_GROUP_PREFIX" in failed.stderr


def test_log_group_prefix_given_is_kept():
    env = {"PATH": "/usr/bin:/bin", "LOG_GROUP_PREFIX": "/gitlab-cfn/a/12345678", "LOG_GROUP_ID": "0a1b2c3d",
           "BUNDLE_PARAMETER": "/gitlab-cfn/b/gitaly/boot-bundle"}
    out = subprocess.run(["bash", "-c", f"source {SCRIPTS}/lib/common.sh; source {SCRIPTS}/lib/cloudwatch.sh; "
                                        'printf %s "$LOG_GROUP_PREFIX"'], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out == "/gitlab-cfn/a/12345678"
