"""The boot bundle: what it holds, that it is reproducible, and that the templates name it.

A changed boot script must change the bundle's hash and so the app's launch template
(the servers roll), while the Gitaly server's and the bastions' user data stays the same
(only the SSM parameters they read change: no server is replaced or stopped); a build
that changes no boot script, deployed under its own key prefix, changes no user data.
"""

import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile

import pytest
from conftest import props
from gitlab_cfn.compile import bundle, compiler, config, userdata


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def _read(data: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def test_the_bundle_holds_each_roles_script_exactly():
    built = bundle.build()
    assert _read(built.data) == {f"{role}.sh": userdata.body(role)
                                 for role in ("bastion", "gitaly", "gitlab-app", "gitlab-sidekiq", "monitoring", "praefect")}
    assert built.sha256 == hashlib.sha256(built.data).hexdigest()
    assert built.key == f"scripts/boot-{built.sha256}.tar.gz"


def test_the_bundle_is_reproducible():
    files = {"b.sh": b"echo b\n", "a.sh": b"echo a\n"}
    first, second = bundle.pack(files), bundle.pack(dict(reversed(list(files.items()))))
    assert first == second
    members = _members(first)
    assert [m.name for m in members] == ["a.sh", "b.sh"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "root", "root", 0o644)}
    # gzip header: no file name (FLG bit 3) and MTIME 0, so the bytes depend on the content only.
    assert first[3] & 0x08 == 0 and first[4:8] == b"\0\0\0\0"
    assert gzip.decompress(first)
    assert bundle.pack({**files, "a.sh": b"echo A\n"}) != first


def test_the_build_writes_it_and_the_manifest_records_it(tmp_path):
    manifest = compiler.write_build(config.BuildConfig(), tmp_path / "build")
    (entry,) = compiler.stack_files(manifest)
    data = (tmp_path / "build" / entry["path"]).read_bytes()
    assert entry == {"path": bundle.build().key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert manifest["files"] == {"boot-bundle": entry}
    print(f"boot bundle: {entry['size']} bytes")


# The servers and where their user data is, and the parameter each one's names.
SERVERS = (("app", "AppLaunchTemplate", "AppBootBundleParameter", "gitlab-app"),
           ("bastion", "BastionA", "BastionBootBundleParameter", "bastion"),
           ("bastion", "BastionB", "BastionBootBundleParameter", "bastion"),
           ("gitaly", "GitalyInstance", "GitalyBootBundleParameter", "gitaly"))


def _user_data(template: dict, logical: str):
    p = props(template, logical)
    return (p.get("LaunchTemplateData") or p)["UserData"]


def test_the_templates_name_the_bundle_of_their_build(default):
    """Each server's user data names its role's parameter (and the app's the sha256 of the
    build's bundle), never the bundle's key; the parameter holds the location."""
    built = bundle.build()
    for tier, logical, parameter, role in SERVERS:
        _, variables = _user_data(default[tier], logical)["Fn::Base64"]["Fn::Join"][1][0]["Fn::Sub"]
        named = {name: value for name, value in variables.items() if name.startswith("BUNDLE_")}
        expected = {"BUNDLE_PARAMETER": {"Ref": parameter}}
        if tier == "app":
            expected["BUNDLE_SHA256"] = built.sha256
        assert named == expected, (logical, named)
        p = props(default[tier], parameter)
        assert p["Name"] == {"Fn::Sub": f"/gitlab-cfn/${{ParentStackName}}/{role}/boot-bundle"}
        assert p["Type"] == "String"
        # The GitLab servers' parameter also names the SES SMTP secret (scripts/lib/email.sh).
        smtp = {"smtp_secret_arn": "${SmtpSecretArn}"} if tier == "app" else {}
        assert json.loads(p["Value"]["Fn::Sub"]) == {
            "bucket": "${TemplateBucketName}", "key": "${TemplateKeyPrefix}" + built.key,
            "region": "${TemplateBucketRegion}", "sha256": built.sha256, **smtp}
        assert {"TemplateBucketName", "TemplateKeyPrefix", "TemplateBucketRegion"} <= set(default[tier]["Parameters"])


def resolve(value, params: dict):
    """A template value with parameters put in, as CloudFormation resolves it; what is not
    a given parameter (inputs, pseudo parameters, attributes) stays a named placeholder."""
    if isinstance(value, str):
        return value
    (fn, arg), = value.items()
    if fn == "Ref":
        return params.get(arg, f"<{arg}>")
    if fn == "Fn::GetAtt":
        return f"<{'.'.join(arg)}>"
    if fn == "Fn::Base64":
        return resolve(arg, params)
    if fn == "Fn::Join":
        return arg[0].join(resolve(part, params) for part in arg[1])
    if fn == "Fn::Sub":
        text, local = arg if isinstance(arg, list) else (arg, {})
        values = {**params, **{name: resolve(v, params) for name, v in local.items()}}
        return re.sub(r"\$\{([^}!]+)\}", lambda m: values.get(m.group(1), f"<{m.group(1)}>"), text)
    raise AssertionError(f"resolve: {fn} not handled")


def deployed(cfg: config.BuildConfig) -> tuple[dict, dict]:
    """A build's templates by tier, and the parameters deploy gives them: the template key
    prefix is the build's own (``gitlab-cfn/<stack>/<build digest>/``)."""
    from gitlab_cfn.operate.deploy import build_digest

    data = compiler.compile_data(cfg)
    manifest = compiler.make_manifest(cfg, data, {name: compiler.render(t) for name, t in data.items()})
    params = {"TemplateBucketName": "templates", "TemplateBucketRegion": "eu-west-1", "ParentStackName": "gl",
              "TemplateKeyPrefix": f"gitlab-cfn/gl/{build_digest(manifest)}/"}
    return {name.removesuffix(".template.yaml"): t for name, t in data.items()}, params


def user_data_as_deployed(build: tuple[dict, dict]) -> dict[str, str]:
    templates, params = build
    return {logical: resolve(_user_data(templates[tier], logical), params) for tier, logical, _, _ in SERVERS}


def parameters_as_deployed(build: tuple[dict, dict]) -> dict[str, str]:
    templates, params = build
    return {parameter: resolve(props(templates[tier], parameter)["Value"], params)
            for tier, _, parameter, _ in SERVERS}


def test_a_build_that_changes_no_boot_script_leaves_every_server_alone():
    """Another build (here: another CPU threshold) is deployed under another key prefix:
    the user data of the app servers and of the bastions, as the instances receive it,
    stays byte for byte the same (no rolling update, no stop and start); only the boot
    bundle parameters move to the new prefix."""
    before = deployed(config.BuildConfig())
    after = deployed(config.from_dict({"app": {"scale_out_cpu": 70}}))
    assert before[1]["TemplateKeyPrefix"] != after[1]["TemplateKeyPrefix"]
    assert props(before[0]["app"], "CpuHighAlarm")["Threshold"] != props(after[0]["app"], "CpuHighAlarm")["Threshold"]
    assert user_data_as_deployed(before) == user_data_as_deployed(after)
    moved = parameters_as_deployed(after)
    for parameter, value in parameters_as_deployed(before).items():
        assert value != moved[parameter] and after[1]["TemplateKeyPrefix"] in moved[parameter]
    assert props(before[0]["app"], "AppLaunchTemplate") == props(after[0]["app"], "AppLaunchTemplate")


@pytest.fixture
def changed_scripts(tmp_path, monkeypatch):
    """The build's templates before and after one line is added to the app's boot script."""
    before = deployed(config.BuildConfig())
    scripts = tmp_path / "scripts"
    shutil.copytree(userdata.SCRIPTS_DIR, scripts)
    path = scripts / "gitlab-app.sh"
    path.write_text(path.read_text().replace('ROLE=gitlab-app\n', 'ROLE=gitlab-app\n# changed\n'))
    monkeypatch.setattr(userdata, "SCRIPTS_DIR", scripts)
    after = deployed(config.BuildConfig())
    return before, after


def test_a_changed_script_rolls_the_app_servers_and_leaves_gitaly_and_the_bastions_alone(changed_scripts):
    from gitlab_cfn.verify.replacement import diff_loaded

    (before, _), (after, _) = changed_scripts
    assert props(before["app"], "AppLaunchTemplate") != props(after["app"], "AppLaunchTemplate")
    # The app group launches from the new launch template version: a rolling update.
    assert props(after["app"], "AppAutoScalingGroup")["LaunchTemplate"]["Version"] == {
        "Fn::GetAtt": ["AppLaunchTemplate", "LatestVersionNumber"]}
    old, new = user_data_as_deployed(changed_scripts[0]), user_data_as_deployed(changed_scripts[1])
    assert old["AppLaunchTemplate"] != new["AppLaunchTemplate"]
    assert bundle.build().sha256 in new["AppLaunchTemplate"]
    # Gitaly and the bastions: the same instances, the same user data; only the parameters' values change.
    for logical in ("GitalyInstance", "BastionA", "BastionB"):
        assert old[logical] == new[logical], logical
    for tier, logical in (("gitaly", "GitalyInstance"), ("bastion", "BastionA"), ("bastion", "BastionB")):
        assert props(before[tier], logical) == props(after[tier], logical)
    for tier, parameter in (("gitaly", "GitalyBootBundleParameter"), ("bastion", "BastionBootBundleParameter"),
                            ("app", "AppBootBundleParameter")):
        assert props(before[tier], parameter)["Value"] != props(after[tier], parameter)["Value"]
    changes = diff_loaded(before, after)
    assert not [c for c in changes if c.holds_data], [str(c) for c in changes]


def test_no_secret_reaches_the_bundle():
    text = "".join(_read(bundle.build().data).values())
    assert "resolve:secretsmanager" not in text


def test_deploy_uploads_the_bundle_where_the_templates_look(tmp_path, local_aws):
    from gitlab_cfn.operate.deploy import upload_build

    manifest = compiler.write_build(config.BuildConfig(), tmp_path / "build")
    s3 = local_aws.client("s3", "us-east-1")
    s3.create_bucket(Bucket="templates")
    keys = upload_build(s3, tmp_path / "build", "templates", "gitlab-cfn/gl/abc/")
    # Every template of the stack (not the portfolio's), all under templates/.
    assert len(keys) == len(compiler.product_entries(manifest)) and all("/templates/" in k for k in keys)
    (entry,) = compiler.stack_files(manifest)
    body = s3.get_object(Bucket="templates", Key=f"gitlab-cfn/gl/abc/{entry['path']}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]
