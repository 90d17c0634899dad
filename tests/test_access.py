"""The AWS calls of the boot scripts against each role's IAM and KMS grants (verify/access.py).

Every build passes; each realistic one-line bug in a grant, a key policy, a resource ARN, a
user data value or a script fails with the finding that names it. The templates are changed
in memory (a deep copy of the compiled build), so each case costs milliseconds.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from conftest import VARIANTS, templates_for
from gitlab_cfn.compile import userdata
from gitlab_cfn.operate import bake
from gitlab_cfn.verify import access, policy, stackmodel

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {p.stem: yaml.safe_load(p.read_text()) or {} for p in sorted((ROOT / "configs").glob("*.yaml"))}
BUILDS = {**{f"variant:{k}": v for k, v in VARIANTS.items()}, **{f"configs/{k}": v for k, v in CONFIGS.items()}}


def model_of(templates: dict[str, dict]) -> stackmodel.Model:
    return stackmodel.Model({f"{tier}.template.yaml": t for tier, t in templates.items()})


def changed(change, cfg: dict | None = None) -> list[str]:
    """The access findings of the default build after ``change(templates)``."""
    templates = copy.deepcopy(templates_for(cfg or {}))
    change(templates)
    return [f.message for f in access.check(model_of(templates)).findings]


def res(templates, tier, logical):
    return templates[tier]["Resources"][logical]


def statement(templates, tier, logical, sid=None):
    document = res(templates, tier, logical)["Properties"]["PolicyDocument"]
    return next(s for s in document["Statement"] if sid is None or s.get("Sid") == sid)


def user_data_vars(templates, tier, logical):
    props = res(templates, tier, logical)["Properties"]
    data = props.get("LaunchTemplateData", props)
    return data["UserData"]["Fn::Base64"]["Fn::Join"][1][0]["Fn::Sub"][1]


def one(findings: list[str], *needles: str) -> str:
    """The single finding holding every needle; fails listing them all otherwise."""
    hits = [f for f in findings if all(n in f for n in needles)]
    assert len(hits) >= 1, f"no finding with {needles}; got {findings}"
    return hits[0]


# -- every build passes, and the check is not vacuous --------------------------------------------

@pytest.mark.parametrize("name", sorted(BUILDS))
def test_every_build_passes_the_access_check(name):
    result = access.check(model_of(templates_for(BUILDS[name])))
    assert [f.message for f in result.findings] == []
    decided = {(d.server.role, d.request.action) for d in result.decisions}
    # What the app servers do at boot, each decided and allowed (the check is not empty).
    for action in ("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "kms:Decrypt",
                   "kms:GenerateDataKey", "s3:GetObject", "s3:PutObject", "ssm:GetParameter",
                   "cloudformation:SignalResource"):
        assert ("gitlab-app", action) in decided
    assert ("gitaly", "secretsmanager:GetSecretValue") in decided
    assert all(d.allowed for d in result.decisions)
    # Every server of the build had its calls decided; bastions only where the build has them.
    model = model_of(templates_for(BUILDS[name]))
    roles = {d.server.role for d in result.decisions}
    assert roles == {s.role for s in access.servers(model)} >= {"gitlab-app", "gitaly"}
    assert ("bastion" in roles) == BUILDS[name].get("bastions", True)


def test_every_secret_the_scripts_read_is_a_decided_request():
    """Cross-check of the parser: a plain regex over the scripts finds the same secret variables.

    Some secrets are optional (the cache Redis, a second repository storage): each must be
    exported, and decided, by at least one of the builds, and every one a build exports is decided.
    """
    builds = ({}, {"size": "10k", "gitaly": {"keep_single_server": True}})
    results = [access.check(model_of(templates_for(b))) for b in builds]
    for role in ("gitlab-app", "gitlab-sidekiq", "gitaly", "praefect"):
        text = "".join(t for _, t in access.role_sources(role))
        read = set(re.findall(r'secret_(?:string|field) "\$([A-Z_]+)"', text))
        written = set(re.findall(r'put_secret_json "\$([A-Z_]+)"', text))
        assert read and (role != "gitlab-app" or written), role
        exported = set()
        for result in results:
            servers = [d.server for d in result.decisions if d.server.role == role]
            if not servers:
                continue
            server = servers[0]
            got = {(d.request.action, d.request.resource) for d in result.decisions if d.server.role == role}
            for name in read & set(server.values):
                exported.add(name)
                assert ("secretsmanager:GetSecretValue", server.values[name]) in got, (role, name)
            # Only the application servers publish secrets (the Sidekiq branch of the same
            # script reads them); the regex cannot see branches, the access check does.
            for name in (written if role == "gitlab-app" else set()) & set(server.values):
                assert ("secretsmanager:PutSecretValue", server.values[name]) in got, (role, name)
        # The Sidekiq-only servers take neither the SSH host keys nor the root password (their
        # branch of gitlab-app.sh never reads them), and must not be given them.
        withheld = {"gitlab-sidekiq": {"HOST_KEYS_SECRET_ARN", "ROOT_PASSWORD_SECRET_ARN"}}.get(role, set())
        assert not exported & withheld, role
        assert read - withheld <= exported, (role, read - withheld - exported)


def test_the_bundle_download_is_the_object_the_parameter_names():
    result = access.check(model_of(templates_for({})))
    gets = [d for d in result.decisions if d.server.role == "gitaly" and d.request.action == "s3:GetObject"]
    assert len(gets) == 1
    assert re.fullmatch(r"arn:aws:s3:::gitlab-cfn-templates-example/scripts/boot-[0-9a-f]{64}\.tar\.gz",
                        gets[0].request.resource)


# -- removed or wrong grants ---------------------------------------------------------------------

def test_removed_secret_grant_fails():
    def drop(t):   # the app role no longer reads the database secret
        res(t, "database", "DatabaseSecretRead")["Properties"]["Roles"] = []
    finding = one(changed(drop), "gitlab-app", "secretsmanager:GetSecretValue", "DatabaseSecret", "denied")
    assert "scripts/gitlab-app.sh:" in finding and "implicit deny" in finding


def test_removed_action_fails():
    def drop(t):
        statement(t, "app", "AppSecretsWrite")["Action"] = ["secretsmanager:UpdateSecret"]
    one(changed(drop), "secretsmanager:PutSecretValue", "SshHostKeysSecret", "denied")


def test_resource_narrowed_to_the_wrong_arn_fails():
    def narrow(t):   # a plausible ARN pattern that does not match the generated secret name
        statement(t, "database", "DatabaseSecretRead")["Resource"] = [
            {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:database/*"}]
    one(changed(narrow), "secretsmanager:GetSecretValue", "DatabaseSecret", "denied")


def test_removed_kms_via_service_grant_fails():
    def drop(t):
        policies = res(t, "gitaly", "GitalyRole")["Properties"]["Policies"]
        policies[:] = [p for p in policies if p["PolicyName"] != "gitlab-data-key"]
    one(changed(drop), "gitaly", "kms:Decrypt", "GitalyTokenSecret", "denied")


def test_kms_via_the_wrong_service_fails():
    def wrong(t):   # the key is usable through S3 only: the secrets cannot be decrypted
        s = res(t, "gitaly", "GitalyRole")["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
        s["Condition"]["StringEquals"]["kms:ViaService"] = [{"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}]
    findings = changed(wrong)
    one(findings, "gitaly", "kms:Decrypt", "denied")
    assert not any("gitlab-app" in f for f in findings)


def test_kms_for_object_storage_needs_s3_via_service():
    def drop_s3(t):
        s = res(t, "storage", "InstanceRole")["Properties"]["Policies"][1]["PolicyDocument"]["Statement"][0]
        s["Condition"]["StringEquals"]["kms:ViaService"] = s["Condition"]["StringEquals"]["kms:ViaService"][1:]
    one(changed(drop_s3), "gitlab-app", "GitLab object storage", "kms:GenerateDataKey", "denied")


def test_key_policy_statement_removed_fails():
    def drop(t):   # IAM grants count only when the key policy delegates to the account
        res(t, "storage", "DataKey")["Properties"]["KeyPolicy"]["Statement"][0]["Principal"] = {
            "AWS": ["arn:aws:iam::111122223333:root"]}
    finding = one(changed(drop), "kms:Decrypt", "key policy", "allows neither")
    assert "storage.template.yaml:DataKey" in finding


def test_key_policy_without_use_actions_fails():
    def drop(t):
        s = res(t, "storage", "DataKey")["Properties"]["KeyPolicy"]["Statement"][0]
        s["Action"] = [a for a in s["Action"] if a not in ("kms:Decrypt", "kms:GenerateDataKey")]
    one(changed(drop), "kms:GenerateDataKey", "denied")


def test_explicit_deny_wins():
    def deny(t):
        statement(t, "app", "AppSecretsRead")  # exists
        t["app"]["Resources"]["DenyRails"] = {"Type": "AWS::IAM::Policy", "Properties": {
            "PolicyName": "DenyRails", "Roles": [{"Ref": "InstanceRoleName"}], "PolicyDocument": {
                "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "secretsmanager:Get*",
                                                         "Resource": {"Ref": "RailsSecretsSecret"}}]}}}
    one(changed(deny), "RailsSecretsSecret", "explicit Deny in app.template.yaml:DenyRails")


def test_boot_bundle_prefix_mismatch_fails():
    def wrong(t):
        statement(t, "gitaly", "GitalyBootRead", "ReadBootBundle")["Resource"] = [
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${TemplateBucketName}/${TemplateKeyPrefix}bundles/boot-*"}]
    one(changed(wrong), "gitaly", "s3:GetObject", "boot-", "denied")


def test_bundle_parameter_is_also_granted_by_session_manager_policy():
    """Real AWS: AmazonSSMManagedInstanceCore allows ssm:GetParameter on *, so the boot statement
    alone is not what lets the bundle location be read; without both it fails."""
    def drop_statement(t):
        document = res(t, "gitaly", "GitalyBootRead")["Properties"]["PolicyDocument"]
        document["Statement"] = [s for s in document["Statement"] if s["Sid"] != "ReadBootBundleLocation"]
    assert changed(drop_statement) == []

    def drop_both(t):
        drop_statement(t)
        res(t, "gitaly", "GitalyRole")["Properties"]["ManagedPolicyArns"] = []
    one(changed(drop_both), "gitaly", "ssm:GetParameter", "/gitlab-cfn/gitlab/gitaly/boot-bundle", "denied")


def test_object_storage_bucket_missing_from_the_role_fails():
    def drop(t):
        s = res(t, "storage", "InstanceRole")["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
        s["Resource"] = [r for r in s["Resource"] if "LfsBucket" not in str(r)]
    one(changed(drop), "$BUCKET_LFS", "s3:PutObject", "gl-lfs-", "denied")


def test_unknown_managed_policy_is_a_finding_not_a_pass():
    def add(t):
        res(t, "gitaly", "GitalyRole")["Properties"]["ManagedPolicyArns"].append(
            {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonS3ReadOnlyAccess"})
    one(changed(add), "AmazonS3ReadOnlyAccess", "unknown to the access check")


# -- user data and signals -----------------------------------------------------------------------

def test_secret_variable_missing_from_user_data_fails():
    def drop(t):
        del user_data_vars(t, "gitaly", "GitalyInstance")["SHELL_SECRET_ARN"]
    one(changed(drop), "gitaly", "$SHELL_SECRET_ARN is not exported")


def test_a_new_secret_without_its_grant_is_denied():
    def add(t):   # a new secret in the user data, its read grant forgotten
        secret = copy.deepcopy(res(t, "gitaly", "GitLabShellSecret"))
        t["gitaly"]["Resources"]["GitLabShellSecret2"] = secret
        user_data_vars(t, "gitaly", "GitalyInstance")["SHELL_SECRET_ARN"] = {"Ref": "GitLabShellSecret2"}
    one(changed(add), "gitaly", "GetSecretValue", "GitLabShellSecret2", "denied")


def test_a_secret_variable_naming_something_else_is_a_finding():
    def swap(t):
        user_data_vars(t, "gitaly", "GitalyInstance")["SHELL_SECRET_ARN"] = {"Ref": "KmsKeyArn"}
    one(changed(swap), "gitaly", "DataKey is no secret of the stack")


def test_signal_to_a_resource_the_server_is_not_fails():
    def wrong(t):
        user_data_vars(t, "gitaly", "GitalyInstance")["CFN_RESOURCE"] = "GitalyDataVolume"
    one(changed(wrong), "gitaly", "cfn-signal", "GitalyDataVolume", "belongs to")


def test_signal_to_the_parent_stack_fails():
    def wrong(t):
        user_data_vars(t, "app", "AppLaunchTemplate")["CFN_STACK"] = {"Ref": "ParentStackName"}
    one(changed(wrong), "gitlab-app", "cfn-signal", "denied")


# -- the scripts: every call mapped, none skipped ------------------------------------------------

def sources_with(role: str, file: str, extra: str) -> dict:
    return {role: tuple((f, t + extra if f == f"scripts/{file}" else t) for f, t in access.role_sources(role))}


def test_a_new_aws_call_must_be_mapped():
    extra = '\nnotify() {\n  aws_call sns publish --region "$AWS_REGION" --topic-arn "$TOPIC" --message hi\n}\nnotify\n'
    result = access.check(model_of(templates_for({})), sources=sources_with("gitaly", "gitaly.sh", extra))
    one([f.message for f in result.findings], "aws sns publish is not mapped", "scripts/gitaly.sh:")


def test_a_call_through_a_new_wrapper_is_followed():
    extra = ('\nread_it() {\n  aws_call secretsmanager get-secret-value --region "$AWS_REGION" --secret-id "$1"\n}\n'
             'read_it "$DB_SECRET_ARN"\n')
    result = access.check(model_of(templates_for({})), sources=sources_with("gitaly", "gitaly.sh", extra))
    # Gitaly's user data exports no DB_SECRET_ARN: the call is found through the wrapper and refused.
    one([f.message for f in result.findings], "gitaly", "$DB_SECRET_ARN is not exported")


def test_parser_ignores_log_messages_and_existence_tests():
    text = ('log "aws secretsmanager delete-secret is never run"\n'
            'command -v aws >/dev/null\n'
            'if ! command -v cfn-signal >/dev/null; then :; fi\n'
            'retry 3 1 aws ec2 create-tags --resources "$instance" \\\n  --tags "Key=k,Value=v"\n')
    calls = access.script_calls("x", (("scripts/x.sh", text),))
    assert [(c.where, c.service, c.command, c.option("--tags")) for c in calls] == [
        ("scripts/x.sh:4", "ec2", "create-tags", "Key=k,Value=v")]


BRANCHES = """
restore_host_keys() {
  if [[ "$ROLE" == gitlab-sidekiq ]]; then
    return
  fi
  aws_call secretsmanager get-secret-value --secret-id "$HOST_KEYS_SECRET_ARN"
}
read_optional() {
  if [[ -n "${CACHE_SECRET_ARN:-}" ]]; then
    aws secretsmanager get-secret-value --secret-id "$CACHE_SECRET_ARN"
  else
    aws secretsmanager get-secret-value --secret-id "$FALLBACK_SECRET_ARN"
  fi
}
never_called() {
  aws sqs send-message --queue-url "$Q"
}
aws_call() { aws "$@"; }
restore_host_keys
read_optional
"""


def test_role_branches_and_optional_variables_are_followed():
    sources = (("scripts/x.sh", BRANCHES),)
    app = {(c.option("--secret-id"), c.when) for c in access.script_calls("gitlab-app", sources)}
    sidekiq = {(c.option("--secret-id"), c.when) for c in access.script_calls("gitlab-sidekiq", sources)}
    assert app == {("$HOST_KEYS_SECRET_ARN", ()), ("$CACHE_SECRET_ARN", (("CACHE_SECRET_ARN", True),)),
                   ("$FALLBACK_SECRET_ARN", (("CACHE_SECRET_ARN", False),))}
    assert sidekiq == app - {("$HOST_KEYS_SECRET_ARN", ())}
    optional = next(c for c in access.script_calls("gitlab-app", sources) if c.when == (("CACHE_SECRET_ARN", True),))
    assert optional.runs_with({"CACHE_SECRET_ARN": "arn:..."}) and not optional.runs_with({})


def test_an_unmapped_call_on_a_branch_no_server_takes_still_fails():
    sources = {role: (("scripts/x.sh", BRANCHES),) for role in userdata.ROLES}
    result = access.check(model_of(templates_for({})), sources=sources)
    one([f.message for f in result.findings], "scripts/x.sh:16: aws sqs send-message is not mapped")


def test_every_role_of_userdata_is_parsed_and_mapped():
    result = access.check(model_of(templates_for({})))
    assert set(result.calls) == set(userdata.ROLES)
    for role, calls in result.calls.items():
        assert all((c.service, c.command) in access.CALLS for c in calls), role
    assert {(c.service, c.command) for c in result.calls["bake"]} >= {("ec2", "create-tags")}


def test_the_ami_builder_may_tag_itself_with_the_result_only():
    """bake-install.sh's create-tags against the builder's temporary policy (operate/bake.py)."""
    call = next(c for c in access.script_calls("bake") if c.command == "create-tags")
    document = yaml.safe_load(bake.BuilderProfile(None).policy().to_json())
    principal = f"arn:aws:iam::{stackmodel.ACCOUNT}:role/builder"

    def decide(call):
        (request,) = access.CALLS[("ec2", "create-tags")](None, call, lambda w: w.replace("$instance", "i-1")
                                                          .replace("$result", "success"))
        context = {**dict(request.context), f"ec2:ResourceTag/{bake.ROLE_TAG}": bake.BUILDER_ROLE}
        return policy.authorize(principal, stackmodel.ACCOUNT, request.action, request.resource, context,
                                [("builder", document)], [])
    assert decide(call)[0]
    other_tag = access.Call("bake", call.where, "ec2", "create-tags",
                            tuple((k, v.replace("gitlab-cfn:bake", "Name")) for k, v in call.options))
    assert not decide(other_tag)[0]


# -- the evaluator itself ------------------------------------------------------------------------

def allow(statement_: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **statement_}]}


@pytest.mark.parametrize("statement_, context, expected", [
    ({"Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}, {}, True),
    ({"Action": "S3:GETOBJECT", "Resource": "arn:aws:s3:::b/k"}, {}, True),        # actions ignore case
    ({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/k"}, {}, False),       # resources do not
    ({"Action": "s3:GetObjec?", "Resource": "arn:aws:s3:::b/?"}, {}, True),
    ({"NotAction": "s3:Put*", "Resource": "*"}, {}, True),
    ({"NotAction": "s3:Get*", "Resource": "*"}, {}, False),
    ({"Action": "s3:*", "NotResource": "arn:aws:s3:::other/*"}, {}, True),
    ({"Action": "s3:*", "NotResource": "arn:aws:s3:::b/*"}, {}, False),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": {"k": ["x", "y"]}}}, {"k": "y"}, True),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": {"k": "x"}}}, {}, False),   # missing key
    ({"Action": "s3:*", "Resource": "*", "Condition": {"StringEqualsIfExists": {"k": "x"}}}, {}, True),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"StringLike": {"k": "a*"}}}, {"k": "abc"}, True),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"StringNotEquals": {"k": ["a", "b"]}}}, {"k": "b"}, False),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/r*"}}},
     {"aws:PrincipalArn": "arn:aws:iam::1:role/role"}, True),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/x"}}},
     {"aws:PrincipalArn": "arn:aws:iam::1:role/role"}, False),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
     {"aws:SecureTransport": "true"}, True),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}},
     {"aws:TagKeys": ("a", "b")}, False),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}},
     {"aws:TagKeys": ("a", "b")}, True),
    ({"Action": "s3:*", "Resource": "*", "Condition": {"Null": {"k": "true"}}}, {}, True),
])
def test_evaluator_statements(statement_, context, expected):
    got, _ = policy.authorize("arn:aws:iam::1:role/r", "1", "s3:GetObject", "arn:aws:s3:::b/k", context,
                              [("doc", allow(statement_))], [])
    assert got is expected


def test_evaluator_refuses_what_it_cannot_read():
    for condition in ({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}, {"Weird:StringEquals": {"k": "v"}}):
        with pytest.raises(policy.PolicyError):
            policy.authorize("arn:aws:iam::1:role/r", "1", "s3:GetObject", "arn:aws:s3:::b/k", {"k": "v"},
                             [("doc", allow({"Action": "*", "Resource": "*", "Condition": condition}))], [])


def test_evaluator_key_policy_rules():
    role, key = "arn:aws:iam::1:role/r", "arn:aws:kms:us-east-1:1:key/k"
    identity = [("id", allow({"Action": "kms:Decrypt", "Resource": key}))]
    root = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:*",
                           "Resource": "*"}]}
    names_role = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:Decrypt",
                                 "Resource": "*"}]}
    assert policy.authorize(role, "1", "kms:Decrypt", key, {}, identity, [("key", root)], True)[0]
    assert not policy.authorize(role, "1", "kms:Decrypt", key, {}, [], [("key", root)], True)[0]
    assert policy.authorize(role, "1", "kms:Decrypt", key, {}, [], [("key", names_role)], True)[0]
    assert not policy.authorize(role, "1", "kms:Decrypt", key, {}, identity, [], True)[0]
    deny = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}
    assert not policy.authorize(role, "1", "kms:Decrypt", key, {}, identity, [("key", root), ("d", deny)], True)[0]


# -- day-2 operations: the CloudWatch agent, the backup metric, the SES credentials ---------------

CLUSTER = {"size": "10k", "gitaly": {"keep_single_server": True}}


def with_sender(templates):
    """The build as launched with an EmailSender (the root stack's default changed)."""
    templates["main"]["Parameters"]["EmailSender"]["Default"] = "example.com"


def test_the_cloudwatch_agent_and_the_backup_metric_are_decided_for_every_role():
    result = access.check(model_of(templates_for(CLUSTER)))
    assert [f.message for f in result.findings] == []
    decided = {(d.server.role, d.request.action) for d in result.decisions if d.allowed}
    for role in ("gitlab-app", "gitlab-sidekiq", "gitaly", "praefect"):
        for action in ("logs:CreateLogStream", "logs:PutLogEvents", "cloudwatch:PutMetricData"):
            assert (role, action) in decided, (role, action)
    streams = {d.request.resource for d in result.decisions if d.request.action == "logs:PutLogEvents"
               and d.server.role == "praefect"}
    assert any("/praefect:log-stream:" in s for s in streams), streams
    # The nightly backup's metric, into the parent stack's namespace (its name from the bundle parameter).
    backup = [d for d in result.decisions if "lib/backup.sh" in d.request.why
              and d.request.action == "cloudwatch:PutMetricData"]
    assert {d.server.role for d in backup} >= {"gitlab-app"}
    assert {d.request.context for d in backup} == {(("cloudwatch:namespace", "gitlab-cfn/gitlab"),)}


@pytest.mark.parametrize("roles_left, role", [
    ([{"Ref": "InstanceRoleName"}], "gitlab-sidekiq"),
    ([{"Ref": "SidekiqRoleName"}], "gitlab-app"),
])
def test_agent_grant_removed_from_a_gitlab_role_fails(roles_left, role):
    def change(t):
        t["logs"]["Resources"]["AppCloudWatchAgent"]["Properties"]["Roles"] = roles_left
    one(changed(change, CLUSTER), f"({role})", "logs:PutLogEvents", "is denied")


@pytest.mark.parametrize("tier, grant_id, role", [("praefect", "PraefectCloudWatchAgent", "praefect"),
                                                   ("gitaly", "GitalyCloudWatchAgent", "gitaly")])
def test_agent_grant_removed_from_praefect_or_gitaly_fails(tier, grant_id, role):
    def change(t):
        del t[tier]["Resources"][grant_id]
        for r in t[tier]["Resources"].values():
            if isinstance(r.get("DependsOn"), list) and grant_id in r["DependsOn"]:
                r["DependsOn"].remove(grant_id)
    one(changed(change, CLUSTER), f"({role})", "logs:CreateLogStream", "is denied")


def test_agent_shipping_to_a_log_group_the_stack_lacks_fails():
    def change(t):
        del t["logs"]["Resources"]["PraefectLogGroup"]
        t["logs"]["Resources"]["AppCloudWatchAgent"]["DependsOn"].remove("PraefectLogGroup")
    one(changed(change, CLUSTER), "(praefect)", "/praefect is not a log group of the stack")


def test_metrics_outside_the_stack_namespace_are_denied():
    def change(t):
        statement = next(s for s in t["logs"]["Resources"]["AppCloudWatchAgent"]["Properties"]["PolicyDocument"]["Statement"]
                         if s.get("Sid") == "PutStackMetrics")
        statement["Condition"]["StringEquals"]["cloudwatch:namespace"] = "gitlab-cfn/another-stack"
    findings = changed(change, CLUSTER)
    one(findings, "scripts/lib/backup.sh", "cloudwatch:PutMetricData", "is denied")
    one(findings, "(gitlab-sidekiq)", "CloudWatch agent (metrics)", "is denied")


def test_the_ses_credentials_are_read_by_the_app_and_sidekiq_servers_with_a_sender():
    templates = copy.deepcopy(templates_for(CLUSTER))
    with_sender(templates)
    result = access.check(model_of(templates))
    assert [f.message for f in result.findings] == []
    ses = {(d.server.role, d.request.action) for d in result.decisions
           if d.allowed and "SesSmtpSecret" in d.request.resource + d.request.why}
    # The stack's own secret (compile/email.py), encrypted with the stack's key.
    assert ses == {("gitlab-app", "secretsmanager:GetSecretValue"), ("gitlab-sidekiq", "secretsmanager:GetSecretValue"),
                   ("gitlab-app", "kms:Decrypt"), ("gitlab-sidekiq", "kms:Decrypt")}
    # Without a sender nobody reads it.
    result = access.check(model_of(templates_for(CLUSTER)))
    assert not [d for d in result.decisions if "SesSmtpSecret" in d.request.resource]


USER_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mine/smtp-AbCdEf"


def test_a_given_smtp_secret_is_read_in_place_of_the_stacks():
    templates = copy.deepcopy(templates_for(CLUSTER))
    with_sender(templates)
    templates["main"]["Parameters"]["EmailSmtpSecretArn"]["Default"] = USER_SECRET
    result = access.check(model_of(templates))
    assert [f.message for f in result.findings] == []
    read = {d.server.role for d in result.decisions if d.allowed and d.request.resource == USER_SECRET}
    assert read == {"gitlab-app", "gitlab-sidekiq"}
    assert not [d for d in result.decisions if "SesSmtpSecret" in d.request.resource]


def test_ses_credentials_grant_without_the_sidekiq_role_fails():
    def change(t):
        with_sender(t)
        t["storage"]["Resources"]["SmtpCredentialsRead"]["Properties"]["Roles"] = [{"Ref": "InstanceRole"}]
    one(changed(change, CLUSTER), "(gitlab-sidekiq)", "SesSmtpSecret", "is denied")


def test_gitaly_server_side_backups_are_decided_for_every_cluster_node():
    result = access.check(model_of(templates_for(CLUSTER)))
    assert [f.message for f in result.findings] == []
    sink = [d for d in result.decisions if "Gitaly server-side backups" in d.request.why]
    nodes = {d.server.logical for d in sink}
    assert len(nodes) >= 3 and all(d.allowed for d in sink), [d for d in sink if not d.allowed]
    actions = {d.request.action for d in sink}
    assert actions == {"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListBucket",
                       "kms:GenerateDataKey", "kms:Decrypt"}
    # One bucket, the backups bucket the app servers upload GitLab's archive to.
    buckets = {d.request.resource.split(":::")[1].split("/")[0] for d in sink if d.request.action.startswith("s3:")}
    app_backups = {d.request.resource.split(":::")[1].split("/")[0] for d in result.decisions
                   if d.request.why == "GitLab object storage $BUCKET_BACKUPS"}
    assert len(buckets) == 1 and buckets == app_backups, (buckets, app_backups)


@pytest.mark.parametrize("statement, action", [("WriteAndReadRepositoryBackups", "s3:PutObject"),
                                               ("MissingKeysAreNotFound", "s3:ListBucket"),
                                               ("UseStackKeyThroughS3", "kms:GenerateDataKey")])
def test_gitaly_backup_grant_without_a_statement_fails(statement, action):
    def change(t):
        doc = t["gitaly"]["Resources"]["GitalyServerSideBackup"]["Properties"]["PolicyDocument"]
        doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != statement]
    one(changed(change, CLUSTER), "(gitaly)", action, "is denied")
