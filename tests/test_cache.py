from conftest import props, templates_for


def group(t):
    return t["cache"]["Resources"]["RedisReplicationGroup"]


def test_cluster_mode_disabled_with_failover_across_azs(default):
    p = group(default)["Properties"]
    assert "NumNodeGroups" not in p and "ReplicasPerNodeGroup" not in p
    assert p["NumCacheClusters"] == 2
    assert p["AutomaticFailoverEnabled"] is True
    assert p["MultiAZEnabled"] is True
    azs = [az["Fn::Select"][0] for az in p["PreferredCacheClusterAZs"]]
    assert azs == [0, 1]  # the replica is in another AZ than the primary


def test_replicas_spread_round_the_azs():
    p = group(templates_for({"cache": {"replicas": 3}, "az_count": 3}))["Properties"]
    assert p["NumCacheClusters"] == 4
    assert [az["Fn::Select"][0] for az in p["PreferredCacheClusterAZs"]] == [0, 1, 2, 0]


def test_encrypted_with_an_auth_token_from_secrets_manager(default):
    p = group(default)["Properties"]
    assert p["AtRestEncryptionEnabled"] is True and p["TransitEncryptionEnabled"] is True
    assert p["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert p["AuthToken"] == {"Fn::Sub": [
        "{{resolve:secretsmanager:${Secret}:SecretString:token}}", {"Secret": {"Ref": "RedisAuthSecret"}}]}


def test_node_type_default_and_snapshots(default):
    assert default["main"]["Parameters"]["CacheNodeType"]["Default"] == "cache.t3.medium"
    res = group(default)
    assert res["Properties"]["SnapshotRetentionLimit"] == {"Ref": "CacheSnapshotRetentionLimit"}
    assert res["DeletionPolicy"] == res["UpdateReplacePolicy"] == "Snapshot"
    assert props(default["cache"], "RedisSubnetGroup")["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
