"""Bastion tier: "Setting up Bastion Hosts", secure by default.

Builds bastion hosts A and B, one in each of the first two public subnets,
from the current Ubuntu LTS image (AWS's public SSM parameter), t3.micro by
default, each with an Elastic IP so its address survives a stop and start. SSH
reaches them only from ``RemoteAccessCIDR``; their role allows Session Manager
and nothing else. Built only when ``bastions: true``.

Their user data names only the SSM parameter ``BastionBootBundleParameter``, where
the bootstrap finds the boot bundle: a new build updates the parameter, never the
hosts (see ``instances.bundle_parameter``).

Each bastion's network interface takes a public address at launch: its boot
script (scripts/bastion.sh) needs the internet before the Elastic IP, which
waits for the instance and so for the script's signal, is associated.

Exposes: ``BastionAPublicIp``, ``BastionBPublicIp``.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, ec2, iam

from gitlab_cfn.compile.instances import (
    UBUNTU_ROOT_GIB,
    bundle_parameter,
    bundle_user_data,
    from_template,
    launch_template,
    signal_policy,
)
from gitlab_cfn.compile.naming import IAM_PATH, per_az, tags
from gitlab_cfn.compile.policies import assume_role, managed_policy_arn
from gitlab_cfn.compile.tier import Tier, scanner_skip
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn bastion: SSH bastion hosts A and B in the public subnets."

HOSTS = ("A", "B")


def build(tier: Tier) -> None:
    tier.stack_name()
    role = tier.add(iam.Role(
        "BastionRole",
        Path=IAM_PATH,
        Description="GitLab bastion hosts: Session Manager only.",
        AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com"),
        ManagedPolicyArns=[managed_policy_arn("AmazonSSMManagedInstanceCore")],
        Tags=tags("bastion"),
    ))
    profile = tier.add(iam.InstanceProfile("BastionInstanceProfile", Path=IAM_PATH, Roles=[Ref(role)]))
    template = launch_template(
        tier, "BastionLaunchTemplate",
        name="bastion",
        image_id=tier.param("BastionAmiId"),
        instance_type=tier.param("BastionInstanceType"),
        profile_arn=GetAtt(profile, "Arn"),
        root_size=UBUNTU_ROOT_GIB,
    )
    parameter = bundle_parameter(tier, "bastion", logical_id="BastionBootBundleParameter",
                                 grant_id="BastionBootRead", role_names=[Ref(role)], what="the bastion hosts")
    group = tier.input("BastionSecurityGroupId")
    for index, host in enumerate(HOSTS, start=1):
        instance = tier.add(ec2.Instance(
            f"Bastion{host}",
            LaunchTemplate=ec2.LaunchTemplateSpecification(**from_template(template)),
            NetworkInterfaces=[ec2.NetworkInterfaceProperty(
                DeviceIndex="0",
                SubnetId=tier.input(per_az("PublicSubnet", index, "Id")),
                GroupSet=[group],
                AssociatePublicIpAddress=True,
            )],
            UserData=user_data("bastion", {
                "AWS_REGION": Ref("AWS::Region"),
                "CFN_STACK": Ref("AWS::StackName"),
                "CFN_RESOURCE": f"Bastion{host}",
                # The parameter only: this user data never changes (a change would stop
                # and start the host, and not run the new one).
                **bundle_user_data(parameter, pin=False),
            }),
            CreationPolicy=signal_policy(1, "PT15M"),
            DependsOn=["BastionBootRead"],
            Tags=tags(f"bastion-{host.lower()}"),
        ))
        scanner_skip(instance, "CKV_AWS_88",
                     "bastion host: the SSH entry point, reachable only from RemoteAccessCIDR")
        eip = tier.add(ec2.EIP(
            f"Bastion{host}Eip", Domain="vpc", InstanceId=Ref(instance), Tags=tags(f"bastion-{host.lower()}")))
        tier.output(f"Bastion{host}PublicIp", Ref(eip), f"Public address of bastion host {host}.",
                    public=True)
