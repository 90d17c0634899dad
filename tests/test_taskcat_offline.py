"""taskcat itself deploys the parent stack in two regions of the local stand-in (the
default build, and the 3k size with its Gitaly Cluster), and the Service Catalog
portfolio in one.

The project's own taskcat.yml drives it, with the three settings an endpoint
other than AWS needs (signature v2 for S3, no Lambda packaging, short stack
names) and two of its regions; the values it reads from SSM (domain,
certificate, admin range, GitLab AMI) are put there first, as a person would in
a real account. Every created resource is then checked with describe calls, and
after taskcat deletes the stacks only retained data remains.
"""

import time
from pathlib import Path

import boto3
import yaml
from gitlab_cfn.compile import compiler, config, sizes
from gitlab_cfn.operate.deploy import first_failure, stack_states

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ["us-east-1", "eu-west-1"]


def seed(region: str) -> None:
    arn = boto3.client("acm", region_name=region).request_certificate(DomainName="gitlab.example.test")["CertificateArn"]
    ssm = boto3.client("ssm", region_name=region)
    for name, value in {"/gitlab-cfn/taskcat/domain-name": "gitlab.example.test",
                        "/gitlab-cfn/taskcat/certificate-arn": arn,
                        "/gitlab-cfn/taskcat/admin-cidr": "203.0.113.0/24",
                        "/gitlab-cfn/taskcat/principal-arn": "arn:aws:iam::123456789012:role/Developers",
                        "/gitlab-cfn/ami/gitlab": "ami-0a11ab5e1c0de1851"}.items():
        ssm.put_parameter(Name=name, Value=value, Type="String")
    boto3.client("ec2", region_name=region).create_key_pair(KeyName="cikey")  # taskcat_getkeypair's default


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    compiler.write_build(config.BuildConfig(), root / "build")
    compiler.write_build(config.load(ROOT / "configs" / "size-3k.yaml"), root / "build-3k")
    settings = yaml.safe_load((ROOT / "taskcat.yml").read_text())
    settings["project"].update(s3_enable_sig_v2=True, package_lambda=False, shorten_stack_name=True)
    assert set(REGIONS) <= set(settings["tests"]["default-2az"]["regions"])
    assert settings["tests"]["service-catalog"]["template"].startswith("build/")
    assert set(REGIONS) <= set(settings["tests"]["size-3k"]["regions"])
    settings["tests"] = {"default-2az": {**settings["tests"]["default-2az"], "regions": REGIONS},
                         "size-3k": {**settings["tests"]["size-3k"], "regions": REGIONS},
                         "service-catalog": {**settings["tests"]["service-catalog"], "regions": REGIONS[1:]}}
    (root / ".taskcat.yml").write_text(yaml.safe_dump(settings))
    return root


def outputs(cfn, stack_id):
    stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def check_region(region: str, stack_id: str) -> dict:
    cfn = boto3.client("cloudformation", region_name=region)
    states = stack_states(cfn, stack_id)
    # The parent and every nested stack but DNS (no hosted zone).
    stacks = len(compiler.compile_data(config.BuildConfig())) - 2   # the portfolio and DNS are not created
    assert len(states) == stacks, [s.line() for s in states]
    assert {s.status for s in states} == {"CREATE_COMPLETE"}, first_failure(cfn, stack_id)
    out = outputs(cfn, stack_id)

    (db,) = [d for d in boto3.client("rds", region_name=region).describe_db_instances()["DBInstances"]
             if d["Endpoint"]["Address"] == out["DatabaseEndpoint"]]
    assert db["MultiAZ"] and db["StorageEncrypted"] and not db["PubliclyAccessible"]
    assert db["DBName"] == "gitlabhq_production" and db["DeletionProtection"]

    groups = boto3.client("elasticache", region_name=region).describe_replication_groups()["ReplicationGroups"]
    (redis,) = [g for g in groups if g["NodeGroups"][0]["PrimaryEndpoint"]["Address"] == out["RedisEndpoint"]]
    assert redis["AutomaticFailover"] == "enabled" and redis["MultiAZ"] == "enabled"

    autoscaling = boto3.client("autoscaling", region_name=region)
    (asg,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[out["AutoScalingGroupName"]])["AutoScalingGroups"]
    assert (asg["MinSize"], asg["MaxSize"], asg["HealthCheckType"]) == (2, 4, "ELB")
    assert "PraefectAutoScalingGroupName" not in out
    policies = autoscaling.describe_policies(AutoScalingGroupName=asg["AutoScalingGroupName"])["ScalingPolicies"]
    assert sorted(p["ScalingAdjustment"] for p in policies) == [-1, 1]

    s3 = boto3.client("s3", region_name=region)
    buckets = {k: v for k, v in out.items() if k.endswith("BucketName")}
    assert len(buckets) == 12
    for name, bucket in buckets.items():
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        algorithm = rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        assert algorithm == ("AES256" if name == "LogsBucketName" else "aws:kms"), name
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    subnets = boto3.client("ec2", region_name=region).describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [out["VpcId"]]}])["Subnets"]
    assert len(subnets) == 4 and {s["AvailabilityZone"] for s in subnets} == {f"{region}a", f"{region}b"}
    return out


def check_cluster(region: str, stack_id: str) -> dict:
    """The 3k size over three AZs: its groups, the Gitaly servers one per AZ, Praefect behind
    the internal Network Load Balancer."""
    cfn = boto3.client("cloudformation", region_name=region)
    states = stack_states(cfn, stack_id)
    assert {s.status for s in states} == {"CREATE_COMPLETE"}, first_failure(cfn, stack_id)
    out = outputs(cfn, stack_id)
    row = sizes.SIZES["3k"]
    autoscaling = boto3.client("autoscaling", region_name=region)
    for name, count in (("AutoScalingGroupName", row.rails[0]), ("SidekiqAutoScalingGroupName", row.sidekiq[0]),
                        ("PraefectAutoScalingGroupName", row.praefect[0])):
        (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[out[name]])["AutoScalingGroups"]
        assert (group["MinSize"], len(group["Instances"])) == (count, count), name
    ec2 = boto3.client("ec2", region_name=region)
    gitaly = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
              if i["State"]["Name"] == "running" and i.get("VpcId") == out["VpcId"]
              and any(t["Key"] == "Name" and "-gitaly-" in t["Value"] for t in i.get("Tags", []))]
    assert len(gitaly) == 3 and len({i["Placement"]["AvailabilityZone"] for i in gitaly}) == 3
    elb = boto3.client("elbv2", region_name=region)
    (nlb,) = [b for b in elb.describe_load_balancers()["LoadBalancers"]
              if b["VpcId"] == out["VpcId"] and b["Type"] == "network"]
    assert nlb["Scheme"] == "internal" and out["GitalyAddress"] == f"tcp://{nlb['DNSName']}:2305"
    return out


def check_portfolio(region: str, stack_id: str) -> None:
    cfn = boto3.client("cloudformation", region_name=region)
    stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", first_failure(cfn, stack_id)
    out = outputs(cfn, stack_id)
    sc = boto3.client("servicecatalog", region_name=region)
    (found,) = sc.search_products_as_admin(PortfolioId=out["PortfolioId"])["ProductViewDetails"]
    assert found["ProductViewSummary"]["ProductId"] == out["ProductId"]
    (version,) = sc.list_provisioning_artifacts(ProductId=out["ProductId"])["ProvisioningArtifactDetails"]
    url = sc.describe_provisioning_artifact(ProductId=out["ProductId"], ProvisioningArtifactId=version["Id"])[
        "Info"]["LoadTemplateFromURL"]
    assert url.endswith("/gitlab-cfn/build/templates/main.template.yaml")


def test_taskcat_deploys_and_deletes_in_two_regions(standin, tmp_path, monkeypatch):
    standin.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", standin.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for region in REGIONS:
        seed(region)
    root = project(tmp_path)

    from taskcat.testing import CFNTest

    started = time.perf_counter()
    test = CFNTest.from_file(project_root=str(root), input_file=str(root / ".taskcat.yml"), enable_sig_v2=True)
    test.lint_disable = True          # `gitlab-cfn lint` and `check` gate the templates
    test.dont_wait_for_delete = False
    results = {}
    try:
        test.run()
        stacks = test.test_definition.stacks
        gitlab = [s for s in stacks if s.test_name == "default-2az"]
        cluster = [s for s in stacks if s.test_name == "size-3k"]
        assert sorted(s.region_name for s in cluster) == sorted(REGIONS)
        for stack in cluster:
            check_cluster(stack.region_name, stack.id)
        (portfolio,) = [s for s in stacks if s.test_name == "service-catalog"]
        assert sorted(s.region_name for s in gitlab) == sorted(REGIONS)
        for stack in gitlab:
            results[stack.region_name] = (stack.id, check_region(stack.region_name, stack.id))
        check_portfolio(portfolio.region_name, portfolio.id)
    finally:
        # Deletion protection is on by design: turned off as `gitlab-cfn destroy` does.
        for region in REGIONS:
            rds = boto3.client("rds", region_name=region)
            for db in rds.describe_db_instances()["DBInstances"]:
                rds.modify_db_instance(DBInstanceIdentifier=db["DBInstanceIdentifier"], DeletionProtection=False,
                                       ApplyImmediately=True)
        test.clean_up()
    print(f"taskcat run and clean-up in two regions: {time.perf_counter() - started:.1f}s")

    for region, (stack_id, out) in results.items():
        cfn = boto3.client("cloudformation", region_name=region)
        alive = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
        assert alive == []
        s3 = boto3.client("s3", region_name=region)
        for name, bucket in out.items():
            if name.endswith("BucketName"):
                s3.head_bucket(Bucket=bucket)   # retained
        secrets = boto3.client("secretsmanager", region_name=region)
        secrets.describe_secret(SecretId=out["DatabaseSecretArn"])   # retained
        rds = boto3.client("rds", region_name=region)
        assert rds.describe_db_instances()["DBInstances"] == []
        assert rds.describe_db_snapshots()["DBSnapshots"]             # the final snapshot
        ec2 = boto3.client("ec2", region_name=region)
        assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")] == []
        assert [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                if i["State"]["Name"] != "terminated"] == []
        groups = boto3.client("elasticache", region_name=region).describe_replication_groups()["ReplicationGroups"]
        assert {g["Status"] for g in groups} <= {"deleting"}
