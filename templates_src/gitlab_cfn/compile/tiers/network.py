"""Network tier: the VPC of GitLab's guide ("Configuring the network").

Builds a VPC with DNS support and hostnames, a public and a private subnet in
each of ``az_count`` Availability Zones (a Python loop, not Conditions), an
internet gateway, a NAT gateway with an Elastic IP per AZ (or a single one when
``nat_gateways: single``), one public route table and one private route table
per AZ that routes through that AZ's NAT gateway.

Exposes: ``VpcId``, ``PublicSubnetIds``, ``PrivateSubnetIds``,
``PublicSubnet<N>Id``, ``PrivateSubnet<N>Id``.
"""

from troposphere import GetAtt, Join, Ref, Select, ec2

from gitlab_cfn.compile.naming import per_az, tags
from gitlab_cfn.compile.tier import Tier

DESCRIPTION = "gitlab-cfn network: VPC, public and private subnets per AZ, NAT gateways, routes."


def build(tier: Tier) -> None:
    tier.stack_name()
    azs = tier.param("AvailabilityZones")
    vpc = tier.add(ec2.VPC(
        "Vpc",
        CidrBlock=tier.param("VpcCidr"),
        EnableDnsSupport=True,
        EnableDnsHostnames=True,
        Tags=tags("vpc"),
    ))
    igw = tier.add(ec2.InternetGateway("InternetGateway", Tags=tags("gateway")))
    attachment = tier.add(ec2.VPCGatewayAttachment(
        "InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(igw)))

    public_rt = tier.add(ec2.RouteTable("PublicRouteTable", VpcId=Ref(vpc), Tags=tags("public")))
    tier.add(ec2.Route(
        "PublicDefaultRoute",
        DependsOn=attachment.title,
        RouteTableId=Ref(public_rt),
        DestinationCidrBlock="0.0.0.0/0",
        GatewayId=Ref(igw),
    ))

    public, private, nats = [], [], []
    for i in range(1, tier.cfg.az_count + 1):
        az = Select(i - 1, azs)
        pub = tier.add(ec2.Subnet(
            per_az("PublicSubnet", i),
            VpcId=Ref(vpc),
            AvailabilityZone=az,
            CidrBlock=tier.param(per_az("PublicSubnet", i, "Cidr")),
            # Bastions and NAT gateways get Elastic IPs; nothing else in a public
            # subnet should receive a public address by accident.
            MapPublicIpOnLaunch=False,
            Tags=tags(f"public-{i}", Tier="public"),
        ))
        priv = tier.add(ec2.Subnet(
            per_az("PrivateSubnet", i),
            VpcId=Ref(vpc),
            AvailabilityZone=az,
            CidrBlock=tier.param(per_az("PrivateSubnet", i, "Cidr")),
            MapPublicIpOnLaunch=False,
            Tags=tags(f"private-{i}", Tier="private"),
        ))
        public.append(pub)
        private.append(priv)
        tier.add(ec2.SubnetRouteTableAssociation(
            per_az("PublicSubnet", i, "RouteTableAssociation"),
            SubnetId=Ref(pub), RouteTableId=Ref(public_rt)))

        if i == 1 or tier.cfg.nat_gateways == "per-az":
            eip = tier.add(ec2.EIP(
                per_az("NatEip", i), Domain="vpc", DependsOn=attachment.title,
                Tags=tags(f"nat-{i}")))
            nats.append(tier.add(ec2.NatGateway(
                per_az("NatGateway", i),
                AllocationId=GetAtt(eip, "AllocationId"),
                SubnetId=Ref(pub),
                Tags=tags(f"nat-{i}"),
            )))
        nat = nats[-1]

        private_rt = tier.add(ec2.RouteTable(
            per_az("PrivateRouteTable", i), VpcId=Ref(vpc), Tags=tags(f"private-{i}")))
        tier.add(ec2.Route(
            per_az("PrivateDefaultRoute", i),
            RouteTableId=Ref(private_rt),
            DestinationCidrBlock="0.0.0.0/0",
            NatGatewayId=Ref(nat),
        ))
        tier.add(ec2.SubnetRouteTableAssociation(
            per_az("PrivateSubnet", i, "RouteTableAssociation"),
            SubnetId=Ref(priv), RouteTableId=Ref(private_rt)))

    tier.output("VpcId", Ref(vpc), "VPC id.", public=True)
    tier.output("PublicSubnetIds", Join(",", [Ref(s) for s in public]), "Public subnets, one per AZ.")
    tier.output("PrivateSubnetIds", Join(",", [Ref(s) for s in private]), "Private subnets, one per AZ.")
    for i, (pub, priv) in enumerate(zip(public, private), start=1):
        tier.output(per_az("PublicSubnet", i, "Id"), Ref(pub), f"Public subnet {i}.")
        tier.output(per_az("PrivateSubnet", i, "Id"), Ref(priv), f"Private subnet {i}.")
