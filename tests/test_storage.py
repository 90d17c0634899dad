from conftest import props, resources

KINDS = ["artifacts", "external-diffs", "lfs", "uploads", "packages", "dependency-proxy",
         "terraform-state", "ci-secure-files", "pages", "registry", "backups"]
SEED_OBJECT_ACTIONS = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:PutObjectAcl"]
SEED_BUCKET_ACTIONS = ["s3:ListBucket", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
                       "s3:ListBucketMultipartUploads"]
# The two multipart actions act on objects, not buckets: they move to the object statement.
OBJECT_LEVEL = {"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}


def buckets(t):
    """The data buckets: one per GitLab object kind, and backups."""
    return {n: b for n, b in resources(t["storage"], "AWS::S3::Bucket").items() if n != "LogsBucket"}


def test_one_bucket_per_gitlab_object_kind_and_backups(default):
    names = {b["Properties"]["BucketName"]["Fn::Join"][1][1] for b in buckets(default).values()}
    assert names == set(KINDS)
    assert set(resources(default["storage"], "AWS::S3::Bucket")) - set(buckets(default)) == {"LogsBucket"}


def test_bucket_names_start_with_gl_and_are_unique_per_account_region_and_stack(default):
    for bucket in buckets(default).values():
        sep, parts = bucket["Properties"]["BucketName"]["Fn::Join"]
        assert sep == "-" and parts[0] == "gl"
        assert parts[2:4] == [{"Ref": "AWS::AccountId"}, {"Ref": "AWS::Region"}]
        assert "AWS::StackId" in str(parts[4])
        # gl-dependency-proxy-123456789012-ap-southeast-4-abcdef12 is 56 characters.
        longest_region = len("ap-southeast-4")
        assert len(f"gl-{parts[1]}-") + 12 + 1 + longest_region + 1 + 8 <= 63


def test_buckets_are_kms_encrypted_private_and_retained(default):
    for name, bucket in buckets(default).items():
        p = bucket["Properties"]
        rule = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": ["DataKey", "Arn"]}}
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert bucket["DeletionPolicy"] == "Retain", name
        assert bucket["UpdateReplacePolicy"] == "Retain", name


def test_every_bucket_is_versioned_and_old_versions_expire(default):
    for name, bucket in resources(default["storage"], "AWS::S3::Bucket").items():
        p = bucket["Properties"]
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}, name
        (rule,) = p["LifecycleConfiguration"]["Rules"]
        expected = 90 if name == "BackupsBucket" else 30
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == expected, name


def test_every_data_bucket_logs_to_the_log_bucket(default):
    for name, bucket in buckets(default).items():
        logging = bucket["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": "LogsBucket"}
        assert logging["LogFilePrefix"].startswith("s3/")
    logs = default["storage"]["Resources"]["LogsBucket"]
    encryption = logs["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}  # what log delivery accepts
    assert logs["DeletionPolicy"] == logs["UpdateReplacePolicy"] == "Retain"
    lb = props(default["app"], "LoadBalancer")["AccessLoggingPolicy"]
    assert lb["Enabled"] is True and lb["S3BucketName"] == {"Ref": "LogsBucketName"}


def new_stack(value):
    """The stack's own bucket: the last branch of an Fn::If on RestoreBuckets (a restore names
    an old stack's bucket instead; tests/test_restore.py)."""
    if isinstance(value, dict) and "Fn::If" in value and value["Fn::If"][0] == "RestoreBuckets":
        return value["Fn::If"][2]
    return value


def test_every_bucket_refuses_plain_http(default):
    storage = default["storage"]
    policies = resources(storage, "AWS::S3::BucketPolicy")
    # An object bucket's policy names the stack's bucket, or on a restore the old one (RestoreBuckets).
    named = {new_stack(p["Properties"]["Bucket"])["Ref"] for p in policies.values()}
    assert named == set(resources(storage, "AWS::S3::Bucket"))
    for name, policy in policies.items():
        document = policy["Properties"]["PolicyDocument"]
        # The log bucket's policy depends on the region (ELB's log writer): both branches deny HTTP.
        documents = document["Fn::If"][1:] if "Fn::If" in document else [document]
        for doc in documents:
            statement = doc["Statement"][0]
            assert statement["Sid"] == "DenyInsecureTransport", name
            assert statement["Effect"] == "Deny", name
            assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, name
            assert statement["Action"] == ["s3:*"], name


def test_kms_key_rotates_and_is_kept(default):
    key = default["storage"]["Resources"]["DataKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"


def test_instance_role_s3_policy_is_the_guides_narrowed_to_these_buckets(default):
    role = props(default["storage"], "InstanceRole")
    policies = {p["PolicyName"]: p["PolicyDocument"] for p in role["Policies"]}
    objects, bucket_stmt = policies["gitlab-object-storage"]["Statement"]
    assert sorted(objects["Action"] + bucket_stmt["Action"]) == sorted(SEED_OBJECT_ACTIONS + SEED_BUCKET_ACTIONS)
    assert set(objects["Action"]) == set(SEED_OBJECT_ACTIONS) | OBJECT_LEVEL
    assert set(bucket_stmt["Action"]) == set(SEED_BUCKET_ACTIONS) - OBJECT_LEVEL
    logical = sorted(buckets(default))
    assert sorted(new_stack(r)["Fn::GetAtt"][0] for r in bucket_stmt["Resource"]) == logical
    assert sorted(new_stack(r["Fn::Sub"][1]["Bucket"])["Fn::GetAtt"][0] for r in objects["Resource"]) == logical
    assert all(r["Fn::Sub"][0] == "${Bucket}/*" for r in objects["Resource"])


def test_instance_role_has_session_manager_only(default):
    # The CloudWatch agent's rights are the logs tier's grant, scoped to the stack
    # (tests/test_monitoring.py), not the broad CloudWatchAgentServerPolicy.
    role = props(default["storage"], "InstanceRole")
    assert [arn["Fn::Sub"].rsplit("/", 1)[1] for arn in role["ManagedPolicyArns"]] == [
        "AmazonSSMManagedInstanceCore"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": ["ec2.amazonaws.com"]}


def test_no_iam_statement_grants_a_wildcard_action(variant):
    _, _, t = variant
    for tier, template in t.items():
        for text in _statements(template):
            actions = text["Action"] if isinstance(text["Action"], list) else [text["Action"]]
            if text["Effect"] == "Allow" and "Principal" not in text:
                assert "*" not in actions and not any(a.endswith(":*") for a in actions), tier


def _statements(node):
    if isinstance(node, dict):
        if "Statement" in node and isinstance(node["Statement"], list):
            yield from node["Statement"]
        for value in node.values():
            yield from _statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from _statements(value)
