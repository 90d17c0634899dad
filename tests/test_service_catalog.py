"""The Service Catalog product: its launch role, and the portfolio on the stand-in.

The launch role is derived from the CloudFormation registry's handler permissions
of the build's resource types; these tests hold it to that (every action the
handlers need is granted or excluded with a reason), to an expected set written
apart from that derivation (support/launch_role_needs.py), to its scope (this account
and region, IAM under /gitlab-cfn/, no delete of retained data), and show the
derivation and the gate failing on bad input. Then the portfolio template is
deployed on the stand-in from its published URL and `gitlab-cfn catalog publish`
adds versions.
"""

import copy
import json
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml
from conftest import VARIANTS, templates_for
from gitlab_cfn.compile import launch_role
from gitlab_cfn.compile.compiler import PORTFOLIO
from gitlab_cfn.compile.naming import IAM_PATH
from gitlab_cfn.operate.deploy import first_failure, stack_states
from gitlab_cfn.operate.progress import Progress
from gitlab_cfn.operate.publish import PublishRequest, publish
from gitlab_cfn.verify import iam
from support.launch_role_needs import NEEDS
from test_cli import EXE
from test_publish import ENV, REGIONS, buckets, build  # noqa: F401 (build is a fixture)
from troposphere import encode_to_dict

ROLE = "arn:aws:iam::123456789012:role/Developers"


def product_of(built: dict) -> dict:
    return {name: t for name, t in built.items() if name != PORTFOLIO}


def launch_statements(built: dict) -> list[dict]:
    resources = built[PORTFOLIO]["Resources"]
    return [s for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


def granted(statements: list[dict]) -> list[str]:
    return [a for s in statements if s["Effect"] == "Allow" for a in s["Action"]]


def allows(actions: list[str], action: str) -> bool:
    return any(fnmatchcase(action.lower(), a.lower()) for a in actions)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_handler_permission_is_granted_or_excluded_with_a_reason(variant):
    built = templates_for(VARIANTS[variant])
    actions = granted(launch_statements(built))
    need = launch_role.needs(product_of(built))
    kinds = {r["Type"] for t in product_of(built).values() for r in t["Resources"].values()}
    unexplained = []
    for kind in sorted(kinds):
        for handler, permissions in launch_role.handler_permissions(kind).items():
            for action in permissions:
                if handler == "delete" and kind in need.retained_types:
                    continue
                for named in launch_role.SUBSTITUTES.get(action, [action]):
                    if not allows(actions, named) and not launch_role.excluded(named):
                        unexplained.append(f"{kind} {handler}: {named}")
    assert unexplained == []
    assert len(actions) > 200


def _not_granted(built: dict, actions: list[str]) -> list[str]:
    """The needs written in tests/support/launch_role_needs.py that ``actions`` do not allow."""
    kinds = {r["Type"] for t in product_of(built).values() for r in t["Resources"].values()}
    unknown = sorted(kinds - set(NEEDS))
    assert unknown == [], f"write the needs of {unknown} in tests/support/launch_role_needs.py, from their schemas"
    return [f"{kind}: {action}" for kind in sorted(kinds) for action in NEEDS[kind] if not allows(actions, action)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_launch_role_grants_what_each_resource_type_needs(variant):
    """Expected set independent of the product's derivation: literal data from the registry schemas."""
    built = templates_for(VARIANTS[variant])
    assert _not_granted(built, granted(launch_statements(built))) == []


def test_an_action_removed_from_the_launch_role_fails_the_needs_check(default, monkeypatch):
    actions = granted(launch_statements(default))
    assert _not_granted(default, [a for a in actions if a != "rds:CreateDBInstance"]) == \
        ["AWS::RDS::DBInstance: rds:CreateDBInstance"]
    # Excluded by the product's own table, with a reason: the product's derivation agrees with
    # itself, and the independent check still fails.
    monkeypatch.setitem(launch_role.EXCLUDED, "ec2:AttachVolume", "volumes are never attached")
    launch_role.excluded.cache_clear()
    try:
        statements = launch_role.statements(launch_role.needs(product_of(default)))
        narrowed = granted([encode_to_dict(s) for s in statements])
    finally:
        monkeypatch.undo()
        launch_role.excluded.cache_clear()
    assert "ec2:AttachVolume" not in narrowed
    assert _not_granted(default, narrowed) == ["AWS::EC2::Instance: ec2:AttachVolume"]


def test_the_expected_needs_are_the_registry_handlers_own():
    """Every action of launch_role_needs.py is one its type's handlers list (a wildcard there
    stands for the named calls), in the schemas cfn-lint ships: the literal data keeps to its source."""
    import cfnlint

    folder = Path(cfnlint.__file__).parent / "data" / "schemas"
    providers = json.loads((folder / "providers" / "us-east-1.json").read_text())
    strays = []
    for kind, needed in NEEDS.items():
        if kind.startswith("Custom::"):
            assert needed == ("lambda:InvokeFunction",), kind   # no schema: the invocation only
            continue
        handlers = json.loads((folder / "resources" / f"{providers[kind]}.json").read_text())["handlers"]
        listed = {p for name, h in handlers.items() if name != "list" for p in h.get("permissions", [])}
        strays += [f"{kind}: {a}" for a in needed if not any(fnmatchcase(a.lower(), p.lower()) for p in listed)]
    assert strays == []
    assert sum(map(len, NEEDS.values())) > 300


def test_the_launch_role_cannot_delete_what_the_stacks_retain(default):
    need = launch_role.needs(product_of(default))
    assert need.retained_types == {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::SecretsManager::Secret",
                                   "AWS::Logs::LogGroup", "AWS::Backup::BackupVault"}
    actions = granted(launch_statements(default))
    for action in ("s3:DeleteBucket", "kms:ScheduleKeyDeletion", "secretsmanager:DeleteSecret", "logs:DeleteLogGroup",
                   "iam:PutUserPolicy", "iam:CreateLoginProfile", "iam:AttachGroupPolicy"):
        assert not allows(actions, action), action
    # The SES SMTP user is created, under the product's path only; its key is the function's to make.
    iam_scopes = {r["Fn::Sub"] for s in launch_statements(default) if "iam:CreateUser" in s["Action"] for r in s["Resource"]}
    assert "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/gitlab-cfn/*" in iam_scopes
    assert not allows(actions, "iam:CreateAccessKey")
    # GitLab's objects are never read or written: s3:GetObject only on the published templates.
    on_gl = granted([s for s in launch_statements(default)
                     if any("s3:::gl-" in r.get("Fn::Sub", "") for r in s["Resource"] if isinstance(r, dict))])
    assert on_gl and not allows(on_gl, "s3:GetObject") and not allows(on_gl, "s3:PutObject")
    # What is snapshotted on delete can be deleted (CloudFormation snapshots it first).
    assert allows(actions, "rds:DeleteDBInstance") and allows(actions, "ec2:DeleteVolume")


def test_the_launch_role_stays_in_this_account_and_region(default):
    for statement in launch_statements(default):
        resources = statement["Resource"]
        if resources == ["*"]:
            assert set(statement["Action"]) <= launch_role.UNSCOPED, statement["Sid"]
            continue
        for resource in resources:
            arn = resource["Fn::Sub"]
            assert arn.startswith("arn:${AWS::Partition}:"), arn
            service = arn.split("}:", 1)[1].split(":")[0]
            if service == "iam":
                assert any(f"{kind}{IAM_PATH}" in arn for kind in ("role", "instance-profile", "user", "group")) \
                    or "aws-service-role" in arn, arn
            elif service == "s3":
                assert arn.split(":::")[1].startswith(("gl-", "${TemplateBucketName}/", "*/*")), arn
            elif service == "cloudwatch" and ":dashboard/" in arn:
                # Dashboards are global: their ARNs name no region.
                assert arn == "arn:${AWS::Partition}:cloudwatch::${AWS::AccountId}:dashboard/*", arn
            elif service != "route53":
                assert "${AWS::Region}" in arn, arn
        assert not any(a == "*" or a.endswith(":*") for a in statement["Action"]), statement["Sid"]
    sids = {s["Sid"]: s for s in launch_statements(default)}
    assert sids["PassStackRoles"]["Condition"] == {"StringEquals": {"iam:PassedToService": launch_role.PASS_ROLE_TO}}
    assert "ArnEquals" in sids["AttachNamedManagedPolicies"]["Condition"]
    assert sids["ServiceCatalogTemplateCopy"]["Condition"] == {
        "StringEquals": {"s3:ExistingObjectTag/servicecatalog:provisioning": "true"}}


def test_every_role_of_the_product_is_under_the_launch_role_path(variant):
    _, _, built = variant
    for template in built.values():
        for lid, resource in template["Resources"].items():
            if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::InstanceProfile", "AWS::IAM::ManagedPolicy"):
                assert resource["Properties"].get("Path") == IAM_PATH, lid


def test_policies_stay_under_the_iam_size_limit(default):
    resources = default[PORTFOLIO]["Resources"]
    sizes = [len("".join(json.dumps(r["Properties"]["PolicyDocument"]).split()))
             for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    assert len(sizes) >= 2 and all(size <= launch_role.MAX_POLICY_CHARS for size in sizes)
    assert resources["LaunchRole"]["Properties"]["ManagedPolicyArns"] == [
        {"Ref": f"LaunchRolePolicy{i}"} for i in range(1, len(sizes) + 1)]


def test_a_resource_type_the_role_cannot_scope_fails_the_build():
    product = {"main": {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {}}}}}
    with pytest.raises(launch_role.LaunchRoleError, match="no scope for service "):
        launch_role.statements(launch_role.needs(product))
    with pytest.raises(launch_role.LaunchRoleError, match="AWS::Made::Up: no registry schema"):
        launch_role.needs({"main": {"Resources": {"X": {"Type": "AWS::Made::Up"}}}})


def test_an_oversized_statement_fails_the_build():
    from awacs.aws import Action, Allow, Statement

    huge = Statement(Sid="Huge", Effect=Allow, Resource=["*"],
                     Action=[Action("ec2", f"Describe{'X' * 40}{i}") for i in range(200)])
    with pytest.raises(launch_role.LaunchRoleError, match="Huge alone exceeds 6144"):
        launch_role.documents([huge])


def test_the_gate_accepts_the_escalation_finding_only_on_the_launch_role(default):
    """The allowlisted parliament finding is reported again when it appears anywhere else."""
    template = copy.deepcopy(default[PORTFOLIO])
    policy = next(r for lid, r in template["Resources"].items() if lid.startswith("LaunchRolePolicy")
                  and any(s["Sid"] == "S3InThisAccount" for s in r["Properties"]["PolicyDocument"]["Statement"]))
    assert iam.analyse("service-catalog.template.yaml", template) == []
    template["Resources"]["SomeOtherPolicy"] = copy.deepcopy(policy)
    rules = {f.rule for f in iam.analyse("service-catalog.template.yaml", template)}
    assert rules == {"PARLIAMENT:RESOURCE_POLICY_PRIVILEGE_ESCALATION"}


def test_s3_reads_outside_gl_buckets_are_only_for_templates(default):
    template = copy.deepcopy(default[PORTFOLIO])
    for resource in template["Resources"].values():
        for statement in (resource.get("Properties", {}).get("PolicyDocument") or {}).get("Statement", []):
            if statement.get("Sid") == "PublishedTemplates":
                statement["Action"] = ["s3:GetObject", "s3:PutObject"]
            if statement.get("Sid") == "ServiceCatalogTemplateCopy":
                statement.pop("Condition")
    messages = [f.message for f in iam.analyse("service-catalog.template.yaml", template) if f.rule == "GLC010"]
    assert any("gitlab-cfn-templates-example/*" in m for m in messages)
    assert any("'arn:aws:s3:::*/*'" in m for m in messages)


# -- on the stand-in -------------------------------------------------------------------

def _publish(local_aws, build, version):
    request = PublishRequest(bucket="gl-releases", regions=REGIONS, version=version, build_dir=build)
    return publish(request, local_aws, Progress(quiet=True))


def _catalog_publish(standin, version, *extra):
    return subprocess.run([EXE, "catalog", "publish", "--portfolio-stack", "gitlab-portfolio", "--bucket", "gl-releases",
                           "--regions", ",".join(REGIONS), "--version", version, "--endpoint-url", standin.endpoint,
                           "--json", *extra], capture_output=True, text=True, env=ENV, timeout=120)


def _versions(sc, product):
    return [(a["Name"], a["Guidance"]) for a in sc.list_provisioning_artifacts(ProductId=product)["ProvisioningArtifactDetails"]]


def test_the_portfolio_deploys_from_its_link_and_catalog_publish_adds_versions(local_aws, standin, build):
    buckets(local_aws)
    first = _publish(local_aws, build, "1.0.0")

    products = {}
    for region in REGIONS:
        link = urlparse(first.portfolio_links[region])
        fragment = parse_qs(link.fragment.split("?", 1)[1])
        assert fragment["stackName"] == ["gitlab-portfolio"] and fragment["param_ProductVersion"] == ["1.0.0"]
        parameters = {k.removeprefix("param_"): v[0] for k, v in fragment.items() if k.startswith("param_")}
        parameters["PrincipalArn"] = ROLE
        cfn = local_aws.client("cloudformation", region)
        stack_id = cfn.create_stack(StackName="gitlab-portfolio", TemplateURL=unquote(fragment["templateURL"][0]),
                                    Capabilities=["CAPABILITY_IAM"],
                                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])["StackId"]
        stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

        sc = local_aws.client("servicecatalog", region)
        (portfolio,) = sc.list_portfolios()["PortfolioDetails"]
        assert portfolio["Id"] == out["PortfolioId"] and portfolio["DisplayName"] == "GitLab"
        (found,) = sc.search_products_as_admin(PortfolioId=out["PortfolioId"])["ProductViewDetails"]
        assert found["ProductViewSummary"]["ProductId"] == out["ProductId"]
        assert sc.list_principals_for_portfolio(PortfolioId=out["PortfolioId"])["Principals"] == [
            {"PrincipalARN": ROLE, "PrincipalType": "IAM"}]
        (constraint,) = sc.list_constraints_for_portfolio(PortfolioId=out["PortfolioId"])["ConstraintDetails"]
        described = sc.describe_constraint(Id=constraint["ConstraintId"])
        assert constraint["Type"] == "LAUNCH" and json.loads(described["ConstraintParameters"]) == {"RoleArn": out["LaunchRoleArn"]}
        assert f":role{IAM_PATH}" in out["LaunchRoleArn"]
        assert _versions(sc, out["ProductId"]) == [("1.0.0", "DEFAULT")]
        # The version's template is the published main template.
        (artifact,) = sc.list_provisioning_artifacts(ProductId=out["ProductId"])["ProvisioningArtifactDetails"]
        info = sc.describe_provisioning_artifact(ProductId=out["ProductId"], ProvisioningArtifactId=artifact["Id"])["Info"]
        assert info["LoadTemplateFromURL"] == first.urls[region].replace("/main.template.yaml", "/product.template.yaml")
        # ... whose location parameters default to where it is published: nothing to fill in.
        body = local_aws.client("s3", region).get_object(
            Bucket=f"gl-releases-{region}", Key="gitlab-cfn/1.0.0/templates/product.template.yaml")["Body"].read()
        product_parameters = yaml.safe_load(body)["Parameters"]
        assert {n: product_parameters[n]["Default"] for n in ("TemplateBucketName", "TemplateBucketRegion",
                                                             "TemplateKeyPrefix")} == {
            "TemplateBucketName": f"gl-releases-{region}", "TemplateBucketRegion": region,
            "TemplateKeyPrefix": "gitlab-cfn/1.0.0/"}
        products[region] = out["ProductId"]

    # What a team launching the product gets: the product template deploys with GitLab's
    # own parameters only (the stand-in has no ProvisionProduct; CloudFormation launches it).
    region = REGIONS[0]
    local_aws.client("ec2", region).create_key_pair(KeyName="ops")
    cert = local_aws.client("acm", region).request_certificate(DomainName="gitlab.example.test")["CertificateArn"]
    local_aws.client("ssm", region).put_parameter(Name="/gitlab-cfn/ami/gitlab", Value="ami-0a11ab5e1c0de1851",
                                                  Type="String")
    launch = {"AvailabilityZones": f"{region}a,{region}b", "DomainName": "gitlab.example.test", "CertificateArn": cert,
              "GitSshCIDR": "203.0.113.0/24", "RemoteAccessCIDR": "198.51.100.0/24", "KeyPairName": "ops",
              "GitalyAmiId": "ami-0a11ab5e1c0de1851"}
    cfn = local_aws.client("cloudformation", region)
    stack_id = cfn.create_stack(
        StackName="SC-123456789012-pp-abcdefghijklm", Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        TemplateURL=first.urls[region].replace("/main.template.yaml", "/product.template.yaml"),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in launch.items()])["StackId"]
    states = stack_states(cfn, stack_id)
    assert len(states) == 12 and {s.status for s in states} == {"CREATE_COMPLETE"}, first_failure(cfn, stack_id)

    # A version that is not published yet is refused before any region changes.
    refused = _catalog_publish(standin, "1.1.0")
    assert refused.returncode == 2
    assert refused.stderr.startswith("gitlab-cfn: error: --version: 1.1.0 is not published at s3://gl-releases-us-east-1/")
    for region in REGIONS:
        assert _versions(local_aws.client("servicecatalog", region), products[region]) == [("1.0.0", "DEFAULT")]

    _publish(local_aws, build, "1.1.0")
    added = _catalog_publish(standin, "1.1.0", "--deprecate-older")
    assert added.returncode == 0, added.stderr
    results = json.loads(added.stdout)
    assert [(r["region"], r["added"], r["deprecated"], r["versions"]) for r in results] == [
        (region, True, ["1.0.0"], ["1.0.0", "1.1.0"]) for region in REGIONS]
    for region in REGIONS:
        sc = local_aws.client("servicecatalog", region)
        assert _versions(sc, products[region]) == [("1.0.0", "DEPRECATED"), ("1.1.0", "DEFAULT")]

    again = _catalog_publish(standin, "1.1.0")
    assert again.returncode == 0 and [r["added"] for r in json.loads(again.stdout)] == [False, False]
    for region in REGIONS:
        assert len(_versions(local_aws.client("servicecatalog", region), products[region])) == 2

    missing = subprocess.run([EXE, "catalog", "publish", "--portfolio-stack", "nope", "--bucket", "gl-releases",
                              "--regions", "us-east-1", "--version", "1.1.0", "--endpoint-url", standin.endpoint],
                             capture_output=True, text=True, env=ENV, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr == ("gitlab-cfn: error: --portfolio-stack: no stack nope in us-east-1; launch "
                              "templates/service-catalog.template.yaml there first\n")

    # Deleting the portfolio stack takes the portfolio and product with it.
    cfn = local_aws.client("cloudformation", "eu-west-1")
    cfn.delete_stack(StackName="gitlab-portfolio")
    sc = local_aws.client("servicecatalog", "eu-west-1")
    assert sc.list_portfolios()["PortfolioDetails"] == []
    assert sc.search_products_as_admin()["ProductViewDetails"] == []
