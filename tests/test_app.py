from conftest import props, resources, templates_for


def test_classic_load_balancer_listeners_follow_the_guide(default):
    lb = props(default["app"], "LoadBalancer")
    listeners = {(l["Protocol"], l["LoadBalancerPort"], l["InstanceProtocol"], l["InstancePort"])
                 for l in lb["Listeners"]}
    assert listeners == {("HTTP", "80", "HTTP", "80"), ("HTTPS", "443", "HTTP", "80"), ("TCP", "22", "TCP", "22")}
    https = next(l for l in lb["Listeners"] if l["Protocol"] == "HTTPS")
    assert https["SSLCertificateId"] == {"Ref": "CertificateArn"}
    assert lb["CrossZone"] is True
    assert lb["Subnets"] == {"Ref": "PublicSubnetIds"}
    assert lb["HealthCheck"]["Target"] == "HTTP:80/-/readiness"
    assert lb["Policies"][0]["Attributes"] == [
        {"Name": "Reference-Security-Policy", "Value": "ELBSecurityPolicy-TLS-1-2-2017-01"}]


def test_launch_template_for_the_gitlab_servers(default):
    data = props(default["app"], "AppLaunchTemplate")["LaunchTemplateData"]
    assert data["ImageId"] == {"Ref": "GitLabAmiId"}
    assert data["IamInstanceProfile"] == {"Arn": {"Ref": "InstanceProfileArn"}}
    assert data["SecurityGroupIds"] == [{"Ref": "AppSecurityGroupId"}]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert not resources(default["app"], "AWS::AutoScaling::LaunchConfiguration")


def test_gitlab_ami_from_ssm_or_image_id():
    ssm = templates_for({})
    assert ssm["main"]["Parameters"]["GitLabAmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    # The parent resolves the SSM parameter; children receive the image id.
    assert ssm["app"]["Parameters"]["GitLabAmiId"]["Type"] == "AWS::EC2::Image::Id"
    assert "Default" not in ssm["app"]["Parameters"]["GitLabAmiId"]
    plain = templates_for({"app": {"gitlab_ami": "image-id"}})
    assert plain["main"]["Parameters"]["GitLabAmiId"]["Type"] == "AWS::EC2::Image::Id"


def test_auto_scaling_group_follows_the_guide(default):
    asg = default["app"]["Resources"]["AppAutoScalingGroup"]
    p = asg["Properties"]
    assert (p["MinSize"], p["MaxSize"]) == ("2", "4")
    assert p["VPCZoneIdentifier"] == {"Ref": "PrivateSubnetIds"}
    assert p["HealthCheckType"] == "ELB"
    assert p["LoadBalancerNames"] == [{"Ref": "LoadBalancer"}]
    rolling = asg["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MaxBatchSize"] == 1 and rolling["MinInstancesInService"] == 1


def test_a_stack_update_never_resets_a_scaled_out_group(default):
    """No DesiredCapacity: the group starts at MinSize and an update leaves its capacity alone."""
    asg = default["app"]["Resources"]["AppAutoScalingGroup"]
    assert "DesiredCapacity" not in asg["Properties"]
    assert asg["CreationPolicy"]["ResourceSignal"]["Count"] == int(asg["Properties"]["MinSize"])
    one = templates_for({"app": {"min_size": 1, "max_size": 3}})["app"]["Resources"]["AppAutoScalingGroup"]
    assert one["CreationPolicy"]["ResourceSignal"]["Count"] == 1
    assert one["UpdatePolicy"]["AutoScalingRollingUpdate"]["MinInstancesInService"] == 0


def _seconds(duration):
    import re

    h, m, s = (int(g or 0) for g in re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", duration).groups())
    return h * 3600 + m * 60 + s


def test_grace_period_covers_the_boot_budget(default):
    from gitlab_cfn.compile.tiers import app

    asg = default["app"]["Resources"]["AppAutoScalingGroup"]
    grace = asg["Properties"]["HealthCheckGracePeriod"]
    assert grace == app.HEALTH_CHECK_GRACE_SECONDS >= app.BOOT_BUDGET_MINUTES * 60
    assert grace >= _seconds(asg["CreationPolicy"]["ResourceSignal"]["Timeout"])
    assert grace >= _seconds(asg["UpdatePolicy"]["AutoScalingRollingUpdate"]["PauseTime"])


def test_servers_start_after_the_grants_they_boot_with(default):
    app = default["app"]["Resources"]
    asg = app["AppAutoScalingGroup"]
    assert sorted(asg["DependsOn"]) == ["AppBootRead", "AppSecretsRead", "AppSecretsWrite"]
    for grant in asg["DependsOn"]:
        assert app[grant]["Type"] == "AWS::IAM::Policy"
        assert app[grant]["Properties"]["Roles"] == [{"Ref": "InstanceRoleName"}]
    gitaly = default["gitaly"]["Resources"]
    assert sorted(gitaly["GitalyInstance"]["DependsOn"]) == [
        "GitalyBootRead", "GitalyCloudWatchAgent", "GitalyTokenSecretRead"]
    for host in ("A", "B"):
        assert default["bastion"]["Resources"][f"Bastion{host}"]["DependsOn"] == ["BastionBootRead"]


def test_root_volume_at_least_the_image(default):
    from gitlab_cfn.compile.images import IMAGE_ROOT_GIB

    param = default["main"]["Parameters"]["AppRootVolumeSize"]
    assert param["MinValue"] == param["Default"] == IMAGE_ROOT_GIB == 30
    data = props(default["app"], "AppLaunchTemplate")["LaunchTemplateData"]
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == {"Ref": "AppRootVolumeSize"}
    assert default["app"]["Parameters"]["AppRootVolumeSize"]["MinValue"] == IMAGE_ROOT_GIB


def _scaling(t):
    out = {}
    for alarm in resources(t["app"], "AWS::CloudWatch::Alarm").values():
        p = alarm["Properties"]
        (action,) = p["AlarmActions"]
        policy = props(t["app"], action["Ref"])
        out[p["ComparisonOperator"]] = (p["Threshold"], p["MetricName"], policy["ScalingAdjustment"])
    return out


def test_scaling_thresholds_follow_the_guide(default):
    assert _scaling(default) == {
        "GreaterThanThreshold": (60, "CPUUtilization", 1),
        "LessThanThreshold": (45, "CPUUtilization", -1),
    }


def test_scaling_thresholds_come_from_the_config():
    t = templates_for({"app": {"scale_out_cpu": 75, "scale_in_cpu": 30, "max_size": 6}})
    assert _scaling(t) == {
        "GreaterThanThreshold": (75, "CPUUtilization", 1),
        "LessThanThreshold": (30, "CPUUtilization", -1),
    }
    assert props(t["app"], "AppAutoScalingGroup")["MaxSize"] == "6"


def test_alarms_watch_this_group(default):
    for alarm in resources(default["app"], "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["Dimensions"] == [
            {"Name": "AutoScalingGroupName", "Value": {"Ref": "AppAutoScalingGroup"}}]


def test_dns_record_only_with_a_hosted_zone(default):
    main = default["main"]
    stack = main["Resources"]["DnsStack"]
    assert stack["Condition"] == "HasHostedZone"
    assert main["Conditions"]["HasHostedZone"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "HostedZoneId"}, ""]}]}
    assert main["Parameters"]["HostedZoneId"]["Default"] == ""
    record = props(default["dns"], "GitLabRecord")
    assert record["Type"] == "A"
    assert record["AliasTarget"] == {
        "DNSName": {"Ref": "LoadBalancerDNSName"},
        "HostedZoneId": {"Ref": "LoadBalancerHostedZoneId"},
        "EvaluateTargetHealth": False,
    }
    assert main["Outputs"]["DnsRecordName"]["Condition"] == "HasHostedZone"
