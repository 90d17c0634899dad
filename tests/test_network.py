from conftest import props, resources, templates_for


def test_vpc_has_dns_support_and_hostnames(default):
    vpc = props(default["network"], "Vpc")
    assert vpc["EnableDnsSupport"] is True
    assert vpc["EnableDnsHostnames"] is True
    assert vpc["CidrBlock"] == {"Ref": "VpcCidr"}
    assert default["main"]["Parameters"]["VpcCidr"]["Default"] == "10.0.0.0/16"


def test_subnet_defaults_follow_the_guide(default):
    params = default["main"]["Parameters"]
    assert {n: params[n]["Default"] for n in params if n.startswith(("PublicSubnet", "PrivateSubnet"))} == {
        "PublicSubnet1Cidr": "10.0.0.0/24",
        "PrivateSubnet1Cidr": "10.0.1.0/24",
        "PublicSubnet2Cidr": "10.0.2.0/24",
        "PrivateSubnet2Cidr": "10.0.3.0/24",
    }


def test_az_count_is_a_python_loop_not_conditions():
    for count in (2, 3):
        net = templates_for({"az_count": count})["network"]
        subnets = resources(net, "AWS::EC2::Subnet")
        assert sorted(subnets) == sorted(
            [f"PublicSubnet{i}" for i in range(1, count + 1)]
            + [f"PrivateSubnet{i}" for i in range(1, count + 1)])
        assert "Conditions" not in net
        # Subnet i sits in AZ i of the AvailabilityZones parameter.
        for i in range(1, count + 1):
            for kind in ("Public", "Private"):
                az = props(net, f"{kind}Subnet{i}")["AvailabilityZone"]
                assert az == {"Fn::Select": [i - 1, {"Ref": "AvailabilityZones"}]}


def test_one_nat_gateway_per_az_and_private_routes_stay_in_their_az():
    net = templates_for({"az_count": 3})["network"]
    nats = resources(net, "AWS::EC2::NatGateway")
    assert sorted(nats) == ["NatGateway1", "NatGateway2", "NatGateway3"]
    for i in (1, 2, 3):
        assert props(net, f"NatGateway{i}")["SubnetId"] == {"Ref": f"PublicSubnet{i}"}
        assert props(net, f"NatGateway{i}")["AllocationId"] == {"Fn::GetAtt": [f"NatEip{i}", "AllocationId"]}
        route = props(net, f"PrivateDefaultRoute{i}")
        assert route["RouteTableId"] == {"Ref": f"PrivateRouteTable{i}"}
        assert route["NatGatewayId"] == {"Ref": f"NatGateway{i}"}
        assert route["DestinationCidrBlock"] == "0.0.0.0/0"
        assoc = props(net, f"PrivateSubnet{i}RouteTableAssociation")
        assert assoc == {"SubnetId": {"Ref": f"PrivateSubnet{i}"}, "RouteTableId": {"Ref": f"PrivateRouteTable{i}"}}


def test_single_nat_option_routes_every_private_subnet_through_one_gateway():
    net = templates_for({"nat_gateways": "single", "az_count": 3})["network"]
    assert list(resources(net, "AWS::EC2::NatGateway")) == ["NatGateway1"]
    assert list(resources(net, "AWS::EC2::EIP")) == ["NatEip1"]
    for i in (1, 2, 3):
        assert props(net, f"PrivateDefaultRoute{i}")["NatGatewayId"] == {"Ref": "NatGateway1"}


def test_public_route_table_goes_through_the_internet_gateway(default):
    net = default["network"]
    route = net["Resources"]["PublicDefaultRoute"]
    assert route["Properties"]["GatewayId"] == {"Ref": "InternetGateway"}
    assert route["DependsOn"] == "InternetGatewayAttachment"
    for i in (1, 2):
        assert props(net, f"PublicSubnet{i}RouteTableAssociation")["RouteTableId"] == {"Ref": "PublicRouteTable"}


def test_no_subnet_hands_out_public_addresses(default):
    for name, subnet in resources(default["network"], "AWS::EC2::Subnet").items():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False, name


def test_outputs_for_other_tiers(default):
    outputs = default["network"]["Outputs"]
    assert outputs["PrivateSubnetIds"]["Value"] == {
        "Fn::Join": [",", [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]]}
    assert {"VpcId", "PublicSubnetIds", "PublicSubnet1Id", "PublicSubnet2Id",
            "PrivateSubnet1Id", "PrivateSubnet2Id"} <= set(outputs)
