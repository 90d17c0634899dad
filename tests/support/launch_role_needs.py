"""What the launch role must allow for each resource type the product's templates contain.

Literal data, kept apart from the product's own derivation (``compile/launch_role.py`` and
its exclusion table), so that the launch-role test does not take its expected set from the
code it checks.

Source: the CloudFormation registry's resource provider schemas, as cfn-lint 1.58.0 ships
them (``cfnlint/data/schemas/providers/us-east-1.json`` names each type's schema under
``resources/``), the ``handlers.create``, ``.read``, ``.update`` and ``.delete``
``permissions`` of each type, reviewed one by one:

- a wildcard of a handler (``ec2:Describe*``, ``ssm:Get*``) is written as the calls made
  for these templates (images, instance types, subnets, groups, key pairs, parameters);
- the delete permissions of the types whose every resource is retained (S3 buckets, KMS keys,
  Secrets Manager secrets) are left out: the role must not delete kept data;
- actions of features the templates never configure are left out (S3 Tables, replication,
  VPC Lattice, IAM users and groups, read replicas, Aurora, VPN, IPv6, Firehose, ...).

``test_the_expected_needs_are_the_registry_handlers_own`` checks every action here against
the installed schemas; a resource type that the templates gain must be added here by hand.
"""

NEEDS: dict[str, tuple[str, ...]] = {
    "AWS::AutoScaling::AutoScalingGroup": (
        "autoscaling:AttachLoadBalancers", "autoscaling:AttachLoadBalancerTargetGroups",
        "autoscaling:AttachTrafficSources", "autoscaling:CancelInstanceRefresh", "autoscaling:CreateAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteAutoScalingGroup", "autoscaling:DeleteLifecycleHook",
        "autoscaling:DeleteNotificationConfiguration", "autoscaling:DeleteTags", "autoscaling:Describe*",
        "autoscaling:DetachLoadBalancers", "autoscaling:DetachLoadBalancerTargetGroups",
        "autoscaling:DetachTrafficSources", "autoscaling:DisableMetricsCollection",
        "autoscaling:EnableMetricsCollection", "autoscaling:PutLifecycleHook",
        "autoscaling:PutNotificationConfiguration", "autoscaling:ResumeProcesses", "autoscaling:StartInstanceRefresh",
        "autoscaling:SuspendProcesses", "autoscaling:UpdateAutoScalingGroup", "cloudwatch:PutMetricAlarm",
        "ec2:DescribeAccountAttributes", "ec2:DescribeAvailabilityZones", "ec2:DescribeImages",
        "ec2:DescribeInstances", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
        "ec2:DescribeKeyPairs", "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:RunInstances", "elasticloadbalancing:Describe*",
        "iam:CreateServiceLinkedRole", "iam:PassRole", "ssm:GetParameter", "ssm:GetParameters",
    ),
    "AWS::AutoScaling::ScalingPolicy": (
        "autoscaling:DeletePolicy", "autoscaling:DescribePolicies", "autoscaling:PutScalingPolicy",
        "cloudwatch:GetMetricData",
    ),
    "AWS::Backup::BackupPlan": (
        "backup:CreateBackupPlan", "backup:DeleteBackupPlan", "backup:GetBackupPlan", "backup:ListTags",
        "backup:TagResource", "backup:UntagResource", "backup:UpdateBackupPlan",
    ),
    "AWS::Backup::BackupSelection": (
        "backup:CreateBackupSelection", "backup:DeleteBackupSelection", "backup:GetBackupSelection",
        "iam:GetRole", "iam:PassRole",
    ),
    "AWS::Backup::BackupVault": (  # retained: no delete; no access policy, lock or notifications
        # backup-storage:MountCapsule: listed for CreateBackupVault by AWS Backup's access-control page too.
        "backup-storage:MountCapsule", "backup:CreateBackupVault",
        "backup:DescribeBackupVault", "backup:ListTags", "backup:TagResource", "backup:UntagResource",
        "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:RetireGrant",
    ),
    "AWS::CloudFormation::Stack": (
        "cloudformation:CreateStack", "cloudformation:DeleteStack", "cloudformation:DescribeStacks",
        "cloudformation:GetStackPolicy", "cloudformation:GetTemplate", "cloudformation:SetStackPolicy",
        "cloudformation:UpdateStack", "cloudformation:UpdateTerminationProtection", "iam:PassRole",
    ),
    "AWS::CloudWatch::Alarm": (
        "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource",
        "cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", "cloudwatch:UntagResource",
    ),
    "AWS::CloudWatch::Dashboard": (
        "cloudwatch:DeleteDashboards", "cloudwatch:GetDashboard", "cloudwatch:ListTagsForResource",
        "cloudwatch:PutDashboard", "cloudwatch:TagResource", "cloudwatch:UntagResource",
    ),
    "AWS::EC2::EIP": (
        "ec2:AllocateAddress", "ec2:AssociateAddress", "ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeAddresses",
        "ec2:DisassociateAddress", "ec2:ReleaseAddress",
    ),
    "AWS::EC2::Instance": (
        "ec2:AssociateIamInstanceProfile", "ec2:AttachVolume", "ec2:CreateTags", "ec2:DeleteTags",
        "ec2:DescribeIamInstanceProfileAssociations", "ec2:DescribeInstanceAttribute",
        "ec2:DescribeInstanceCreditSpecifications", "ec2:DescribeInstances", "ec2:DescribeKeyPairs",
        "ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVolumes", "ec2:DescribeVpcs",
        "ec2:DetachVolume", "ec2:DisassociateIamInstanceProfile", "ec2:ModifyInstanceAttribute",
        "ec2:ModifyInstanceCreditSpecification", "ec2:ModifyInstanceMaintenanceOptions",
        "ec2:ModifyInstanceMetadataOptions", "ec2:ModifyInstancePlacement", "ec2:ModifyPrivateDnsNameOptions",
        "ec2:MonitorInstances", "ec2:ReplaceIamInstanceProfileAssociation", "ec2:RunInstances", "ec2:StartInstances",
        "ec2:StopInstances", "ec2:TerminateInstances", "ec2:UnmonitorInstances", "iam:PassRole",
        "ssm:DescribeAssociation", "ssm:ListAssociations",
    ),
    "AWS::EC2::InternetGateway": (
        "ec2:CreateInternetGateway", "ec2:CreateTags", "ec2:DeleteInternetGateway", "ec2:DeleteTags",
        "ec2:DescribeInternetGateways",
    ),
    "AWS::EC2::LaunchTemplate": (
        "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:CreateTags", "ec2:DeleteLaunchTemplate",
        "ec2:DeleteTags", "ec2:DescribeLaunchTemplates",
    ),
    "AWS::EC2::NatGateway": (
        "ec2:CreateNatGateway", "ec2:CreateTags", "ec2:DeleteNatGateway", "ec2:DeleteTags", "ec2:DescribeNatGateways",
    ),
    "AWS::EC2::Route": (
        "ec2:CreateRoute", "ec2:DeleteRoute", "ec2:DescribeNetworkInterfaces", "ec2:DescribeRouteTables",
        "ec2:ReplaceRoute",
    ),
    "AWS::EC2::RouteTable": (
        "ec2:CreateRouteTable", "ec2:CreateTags", "ec2:DeleteRouteTable", "ec2:DeleteTags", "ec2:DescribeRouteTables",
    ),
    "AWS::EC2::SecurityGroup": (
        "ec2:AuthorizeSecurityGroupEgress", "ec2:AuthorizeSecurityGroupIngress", "ec2:CreateSecurityGroup",
        "ec2:CreateTags", "ec2:DeleteSecurityGroup", "ec2:DeleteTags", "ec2:DescribeInstances",
        "ec2:DescribeSecurityGroups", "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
        "ec2:UpdateSecurityGroupRuleDescriptionsEgress", "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    ),
    "AWS::EC2::SecurityGroupEgress": (
        "ec2:AuthorizeSecurityGroupEgress", "ec2:DescribeSecurityGroupRules", "ec2:RevokeSecurityGroupEgress",
        "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
    ),
    "AWS::EC2::SecurityGroupIngress": (
        "ec2:AuthorizeSecurityGroupIngress", "ec2:DescribeSecurityGroupRules", "ec2:DescribeSecurityGroups",
        "ec2:RevokeSecurityGroupIngress", "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    ),
    "AWS::EC2::Subnet": (
        "ec2:CreateSubnet", "ec2:CreateTags", "ec2:DeleteSubnet", "ec2:DeleteTags", "ec2:DescribeNetworkAcls",
        "ec2:DescribeSubnets", "ec2:ModifySubnetAttribute",
    ),
    "AWS::EC2::SubnetRouteTableAssociation": (
        "ec2:AssociateRouteTable", "ec2:DescribeRouteTables", "ec2:DescribeSubnets", "ec2:DisassociateRouteTable",
        "ec2:ReplaceRouteTableAssociation",
    ),
    "AWS::EC2::VPC": (
        "ec2:CreateTags", "ec2:CreateVpc", "ec2:DeleteTags", "ec2:DeleteVpc", "ec2:DescribeNetworkAcls",
        "ec2:DescribeSecurityGroups", "ec2:DescribeVpcAttribute", "ec2:DescribeVpcs", "ec2:ModifyVpcAttribute",
    ),
    "AWS::EC2::VPCGatewayAttachment": (
        "ec2:AttachInternetGateway", "ec2:DescribeInternetGateways", "ec2:DetachInternetGateway",
    ),
    "AWS::EC2::Volume": (
        "ec2:CreateSnapshot", "ec2:CreateTags", "ec2:CreateVolume", "ec2:DeleteTags", "ec2:DeleteVolume",
        "ec2:DescribeSnapshots", "ec2:DescribeTags", "ec2:DescribeVolumeAttribute", "ec2:DescribeVolumes",
        "ec2:DescribeVolumesModifications", "ec2:ModifyVolume", "ec2:ModifyVolumeAttribute", "kms:CreateGrant",
        "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo",
    ),
    "AWS::ElastiCache::ParameterGroup": (
        "elasticache:AddTagsToResource", "elasticache:CreateCacheParameterGroup",
        "elasticache:DeleteCacheParameterGroup", "elasticache:DescribeCacheParameterGroups",
        "elasticache:DescribeCacheParameters", "elasticache:DescribeEngineDefaultParameters",
        "elasticache:ListTagsForResource", "elasticache:ModifyCacheParameterGroup",
        "elasticache:RemoveTagsFromResource", "iam:CreateServiceLinkedRole",
    ),
    "AWS::ElastiCache::ReplicationGroup": (
        "elasticache:AddTagsToResource", "elasticache:CreateReplicationGroup", "elasticache:CreateSnapshot",
        "elasticache:DecreaseReplicaCount", "elasticache:DeleteReplicationGroup", "elasticache:DescribeCacheClusters",
        "elasticache:DescribeReplicationGroups", "elasticache:IncreaseReplicaCount",
        "elasticache:ListTagsForResource", "elasticache:ModifyReplicationGroup", "elasticache:RemoveTagsFromResource",
        "iam:CreateServiceLinkedRole", "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
        "kms:GenerateDataKey",
    ),
    "AWS::ElastiCache::SubnetGroup": (
        "elasticache:AddTagsToResource", "elasticache:CreateCacheSubnetGroup", "elasticache:DeleteCacheSubnetGroup",
        "elasticache:DescribeCacheSubnetGroups", "elasticache:ListTagsForResource",
        "elasticache:ModifyCacheSubnetGroup", "elasticache:RemoveTagsFromResource",
    ),
    "AWS::ElasticLoadBalancing::LoadBalancer": (
        "ec2:CreateSecurityGroup", "ec2:DescribeSecurityGroups", "elasticloadbalancing:AddTags",
        "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer", "elasticloadbalancing:AttachLoadBalancerToSubnets",
        "elasticloadbalancing:ConfigureHealthCheck", "elasticloadbalancing:CreateAppCookieStickinessPolicy",
        "elasticloadbalancing:CreateLBCookieStickinessPolicy", "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateLoadBalancerListeners", "elasticloadbalancing:CreateLoadBalancerPolicy",
        "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteLoadBalancerListeners",
        "elasticloadbalancing:DeleteLoadBalancerPolicy", "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
        "elasticloadbalancing:DescribeLoadBalancerAttributes", "elasticloadbalancing:DescribeLoadBalancerPolicies",
        "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:DetachLoadBalancerFromSubnets",
        "elasticloadbalancing:DisableAvailabilityZonesForLoadBalancer",
        "elasticloadbalancing:EnableAvailabilityZonesForLoadBalancer",
        "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
        "elasticloadbalancing:RemoveTags", "elasticloadbalancing:SetLoadBalancerListenerSSLCertificate",
        "elasticloadbalancing:SetLoadBalancerPoliciesForBackendServer",
        "elasticloadbalancing:SetLoadBalancerPoliciesOfListener",
    ),
    # Listener: Cognito authentication actions left out (no authenticate-cognito action).
    "AWS::ElasticLoadBalancingV2::Listener": (
        "elasticloadbalancing:AddTags", "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DescribeListenerAttributes", "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeTags", "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:ModifyListenerAttributes", "elasticloadbalancing:RemoveTags",
    ),
    # Load balancer: IPAM pools and capacity reservations left out (never configured).
    "AWS::ElasticLoadBalancingV2::LoadBalancer": (
        "elasticloadbalancing:AddTags", "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:RemoveTags",
        "elasticloadbalancing:SetIpAddressType", "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:SetSubnets",
    ),
    "AWS::ElasticLoadBalancingV2::TargetGroup": (
        "ec2:DescribeVpcs", "elasticloadbalancing:AddTags", "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:RemoveTags",
    ),
    # The SES SMTP user and its group (compile/email.py): no login profile, no permissions
    # boundary, no managed policy on the group, no user policy (the group's inline one).
    "AWS::IAM::Group": (
        "iam:CreateGroup", "iam:DeleteGroup", "iam:DeleteGroupPolicy", "iam:DetachGroupPolicy", "iam:GetGroup",
        "iam:GetGroupPolicy", "iam:ListAttachedGroupPolicies", "iam:ListGroupPolicies", "iam:PutGroupPolicy",
        "iam:UpdateGroup",
    ),
    "AWS::IAM::User": (
        # read and delete: the policies and console password looked for, and removed if found.
        "iam:AddUserToGroup", "iam:CreateUser", "iam:DeleteAccessKey", "iam:DeleteLoginProfile", "iam:DeleteUser",
        "iam:DeleteUserPolicy", "iam:DetachUserPolicy", "iam:GetLoginProfile", "iam:GetUser", "iam:GetUserPolicy",
        "iam:ListAccessKeys", "iam:ListAttachedUserPolicies", "iam:ListGroupsForUser", "iam:ListUserPolicies",
        "iam:ListUserTags", "iam:RemoveUserFromGroup", "iam:TagUser", "iam:UntagUser", "iam:UpdateUser",
    ),
    "AWS::IAM::InstanceProfile": (
        "iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile",
        "iam:GetInstanceProfile", "iam:PassRole", "iam:RemoveRoleFromInstanceProfile",
    ),
    "AWS::IAM::Policy": (
        "iam:DeleteRolePolicy", "iam:GetRolePolicy", "iam:PutRolePolicy",
    ),
    "AWS::IAM::Role": (
        "iam:AttachRolePolicy", "iam:CreateRole", "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy",
        "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies",
        "iam:PutRolePolicy", "iam:TagRole", "iam:UntagRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
        "iam:UpdateRoleDescription",
    ),
    "AWS::KMS::Key": (  # retained: no delete
        "kms:CreateKey", "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey",
        "kms:EnableKeyRotation", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags",
        "kms:PutKeyPolicy", "kms:TagResource", "kms:UntagResource", "kms:UpdateKeyDescription",
    ),
    # The SES SMTP credentials function: inline code (no S3 object, layers, code signing or
    # versions), no EFS, Lambda's own capacity, no reserved concurrency (DeleteFunctionConcurrency
    # stays: an update may remove a reservation).
    "AWS::Lambda::Function": (
        "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
        "iam:PassRole", "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey",
        "lambda:CreateFunction", "lambda:DeleteFunction", "lambda:DeleteFunctionConcurrency", "lambda:GetFunction",
        "lambda:GetFunctionCodeSigningConfig", "lambda:GetFunctionRecursionConfig",
        "lambda:GetRuntimeManagementConfig", "lambda:PutFunctionRecursionConfig",
        "lambda:PutRuntimeManagementConfig", "lambda:TagResource", "lambda:UntagResource",
        "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
    ),
    "AWS::Logs::LogGroup": (  # retained: no delete; no data protection, index or resource policy, delivery
        "logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:DeleteRetentionPolicy", "logs:DescribeLogGroups",
        "logs:DisassociateKmsKey", "logs:ListTagsForResource", "logs:PutRetentionPolicy", "logs:TagResource",
        "logs:UntagResource",
    ),
    "AWS::RDS::DBInstance": (
        "ec2:DescribeAccountAttributes", "ec2:DescribeAvailabilityZones", "ec2:DescribeInternetGateways",
        "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcAttribute", "ec2:DescribeVpcs",
        "iam:CreateServiceLinkedRole", "iam:GetRole", "iam:ListRoles", "iam:PassRole", "kms:CreateGrant",
        "kms:DescribeKey", "rds:AddRoleToDBInstance", "rds:AddTagsToResource", "rds:CreateDBInstance",
        "rds:CreateDBSnapshot", "rds:DeleteDBInstance", "rds:DescribeDBEngineVersions",
        "rds:DescribeDBInstanceAutomatedBackups", "rds:DescribeDBInstances", "rds:DescribeDBParameterGroups",
        "rds:DescribeDBSnapshots", "rds:DescribeEvents", "rds:ModifyDBInstance", "rds:RebootDBInstance",
        "rds:RemoveRoleFromDBInstance", "rds:RemoveTagsFromResource",
        # gitlab-cfn restore: the instance from the old stack's final snapshot (DBSnapshotIdentifier).
        "rds:RestoreDBInstanceFromDBSnapshot", "secretsmanager:CreateSecret", "secretsmanager:TagResource",
    ),
    "AWS::RDS::DBParameterGroup": (
        "iam:CreateServiceLinkedRole", "rds:AddTagsToResource", "rds:CreateDBParameterGroup",
        "rds:DeleteDBParameterGroup", "rds:DescribeDBParameterGroups", "rds:DescribeDBParameters",
        "rds:DescribeEngineDefaultParameters", "rds:ListTagsForResource", "rds:ModifyDBParameterGroup",
        "rds:RemoveTagsFromResource", "rds:ResetDBParameterGroup",
    ),
    "AWS::RDS::DBSubnetGroup": (
        "iam:CreateServiceLinkedRole", "rds:AddTagsToResource", "rds:CreateDBSubnetGroup", "rds:DeleteDBSubnetGroup",
        "rds:DescribeDBSubnetGroups", "rds:ListTagsForResource", "rds:ModifyDBSubnetGroup",
        "rds:RemoveTagsFromResource",
    ),
    "AWS::Route53::RecordSet": (
        "route53:ChangeResourceRecordSets", "route53:GetChange", "route53:GetHostedZone", "route53:ListHostedZones",
        "route53:ListResourceRecordSets",
    ),
    "AWS::S3::Bucket": (  # retained: no delete
        "iam:PassRole", "s3:CreateBucket", "s3:DeleteBucketWebsite", "s3:DeleteObject",
        "s3:GetAccelerateConfiguration", "s3:GetAnalyticsConfiguration", "s3:GetBucketAcl", "s3:GetBucketCORS",
        "s3:GetBucketLogging", "s3:GetBucketNotification", "s3:GetBucketOwnershipControls",
        "s3:GetBucketPublicAccessBlock", "s3:GetBucketTagging", "s3:GetBucketVersioning", "s3:GetBucketWebsite",
        "s3:GetEncryptionConfiguration", "s3:GetIntelligentTieringConfiguration", "s3:GetInventoryConfiguration",
        "s3:GetLifecycleConfiguration", "s3:GetMetricsConfiguration", "s3:ListBucket", "s3:ListTagsForResource",
        "s3:PutAccelerateConfiguration", "s3:PutAnalyticsConfiguration", "s3:PutBucketCORS", "s3:PutBucketLogging",
        "s3:PutBucketNotification", "s3:PutBucketOwnershipControls", "s3:PutBucketPublicAccessBlock",
        "s3:PutBucketTagging", "s3:PutBucketVersioning", "s3:PutBucketWebsite", "s3:PutEncryptionConfiguration",
        "s3:PutIntelligentTieringConfiguration", "s3:PutInventoryConfiguration", "s3:PutLifecycleConfiguration",
        "s3:PutMetricsConfiguration", "s3:PutObjectAcl", "s3:TagResource", "s3:UntagResource",
    ),
    "AWS::S3::BucketPolicy": (
        "s3:DeleteBucketPolicy", "s3:GetBucketPolicy", "s3:PutBucketPolicy",
    ),
    "AWS::SNS::Topic": (  # no data protection policy, no delivery role
        "sns:CreateTopic", "sns:DeleteTopic", "sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic",
        "sns:ListTagsForResource", "sns:SetTopicAttributes", "sns:Subscribe", "sns:TagResource", "sns:Unsubscribe",
        "sns:UntagResource",
    ),
    "AWS::SSM::Parameter": (
        "ssm:AddTagsToResource", "ssm:DeleteParameter", "ssm:GetParameters", "ssm:ListTagsForResource",
        "ssm:PutParameter", "ssm:RemoveTagsFromResource",
    ),
    "AWS::SecretsManager::Secret": (  # retained: no delete
        "secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetRandomPassword",
        "secretsmanager:GetSecretValue", "secretsmanager:RemoveRegionsFromReplication",
        "secretsmanager:ReplicateSecretToRegions", "secretsmanager:TagResource", "secretsmanager:UntagResource",
        "secretsmanager:UpdateSecret",
    ),
    "AWS::SecretsManager::SecretTargetAttachment": (
        "rds:DescribeDBInstances", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
    ),
    # A custom resource has no registry schema: CloudFormation invokes its ServiceToken function
    # with the caller's permissions (AWS CloudFormation User Guide, "CloudFormation service role":
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-iam-servicerole.html).
    "Custom::SesSmtpCredentials": ("lambda:InvokeFunction",),
}
