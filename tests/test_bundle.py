"""The boot bundle: what it holds, that it is reproducible, and that the templates name it.

A changed boot script must change the bundle's hash and so the app's launch template
(the servers roll), while the Gitaly server's user data stays the same (only the SSM
parameter it reads changes: the server is neither replaced nor stopped).
"""

import gzip
import hashlib
import io
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
    assert _read(built.data) == {f"{role}.sh": userdata.body(role) for role in ("bastion", "gitaly", "gitlab-app")}
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


def test_the_templates_name_the_bundle_of_their_build(default):
    built = bundle.build()
    for tier, logical in (("app", "AppLaunchTemplate"), ("bastion", "BastionA"), ("bastion", "BastionB")):
        p = props(default[tier], logical)
        user_data = (p.get("LaunchTemplateData") or p)["UserData"]
        _, variables = user_data["Fn::Base64"]["Fn::Join"][1][0]["Fn::Sub"]
        assert variables["BUNDLE_SHA256"] == built.sha256
        assert variables["BUNDLE_KEY"] == {"Fn::Sub": "${TemplateKeyPrefix}" + built.key}
        assert variables["BUNDLE_BUCKET"] == {"Ref": "TemplateBucketName"}
        assert variables["BUNDLE_REGION"] == {"Ref": "TemplateBucketRegion"}
    value = props(default["gitaly"], "GitalyBootBundleParameter")["Value"]["Fn::Sub"]
    assert built.sha256 in value and "${TemplateKeyPrefix}" + built.key in value
    for tier in ("app", "bastion", "gitaly"):
        assert {"TemplateBucketName", "TemplateKeyPrefix", "TemplateBucketRegion"} <= set(default[tier]["Parameters"])


@pytest.fixture
def changed_scripts(tmp_path, monkeypatch):
    """The build's templates before and after one line is added to the app's boot script."""
    before = compiler.compile_data(config.BuildConfig())
    scripts = tmp_path / "scripts"
    shutil.copytree(userdata.SCRIPTS_DIR, scripts)
    path = scripts / "gitlab-app.sh"
    path.write_text(path.read_text().replace('ROLE=gitlab-app\n', 'ROLE=gitlab-app\n# changed\n'))
    monkeypatch.setattr(userdata, "SCRIPTS_DIR", scripts)
    after = compiler.compile_data(config.BuildConfig())
    return ({name.removesuffix(".template.yaml"): data for name, data in before.items()},
            {name.removesuffix(".template.yaml"): data for name, data in after.items()})


def test_a_changed_script_rolls_the_app_servers_and_leaves_gitaly_alone(changed_scripts):
    from gitlab_cfn.verify.replacement import diff_loaded

    before, after = changed_scripts
    assert props(before["app"], "AppLaunchTemplate") != props(after["app"], "AppLaunchTemplate")
    # The app group launches from the new launch template version: a rolling update.
    assert props(after["app"], "AppAutoScalingGroup")["LaunchTemplate"]["Version"] == {
        "Fn::GetAtt": ["AppLaunchTemplate", "LatestVersionNumber"]}
    # Gitaly: the same instance, the same user data; only the parameter's value changes.
    assert props(before["gitaly"], "GitalyInstance") == props(after["gitaly"], "GitalyInstance")
    assert props(before["gitaly"], "GitalyBootBundleParameter")["Value"] != \
        props(after["gitaly"], "GitalyBootBundleParameter")["Value"]
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
    assert len(keys) == 10 and all("/templates/" in k for k in keys)
    (entry,) = compiler.stack_files(manifest)
    body = s3.get_object(Bucket="templates", Key=f"gitlab-cfn/gl/abc/{entry['path']}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]
