"""CloudFormation models for resource types stock moto skips silently.

Each creates the resource in moto's own backend where moto has one (secrets,
ElastiCache replication and subnet groups, scaling policies, alarms, bucket
policies, security group egress rules), so that describe calls see what the
stack created. Runs inside the stand-in's virtual environment, next to moto.
"""

from __future__ import annotations

import json
from typing import Any

from moto.autoscaling.models import autoscaling_backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.ec2.models import ec2_backends
from moto.elasticache.models import elasticache_backends
from moto.s3.models import s3_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.utilities.utils import get_partition


def _tags(props: dict) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in props.get("Tags", []) or []]


class _Model:
    """Shared plumbing: the physical id, attributes, and no-op updates.

    A mixin: moto registers only direct subclasses of CloudFormationModel, so
    each model below names both."""

    attributes: dict[str, Any] = {}

    def __init__(self, physical_id: str, **attributes: Any):
        self._physical_id = physical_id
        self.attributes = attributes

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name in self.attributes:
            return self.attributes[attribute_name]
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        raise UnformattedGetAttTemplateException()

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):  # type: ignore[override]
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):  # type: ignore[override]
        return None

    def is_created(self) -> bool:
        return True


class Secret(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        backend = secretsmanager_backends[account_id][region_name]
        value = props.get("SecretString")
        generate = props.get("GenerateSecretString")
        if generate is not None:
            password = backend.get_random_password(
                password_length=int(generate.get("PasswordLength", 32)),
                exclude_characters=generate.get("ExcludeCharacters", ""),
                exclude_numbers=bool(generate.get("ExcludeNumbers", False)),
                exclude_punctuation=bool(generate.get("ExcludePunctuation", False)),
                exclude_uppercase=bool(generate.get("ExcludeUppercase", False)),
                exclude_lowercase=bool(generate.get("ExcludeLowercase", False)),
                include_space=bool(generate.get("IncludeSpace", False)),
                require_each_included_type=bool(generate.get("RequireEachIncludedType", True)),
            )
            password = json.loads(password)["RandomPassword"] if password.startswith("{") else password
            if "SecretStringTemplate" in generate:
                document = json.loads(generate["SecretStringTemplate"])
                document[generate["GenerateStringKey"]] = password
                value = json.dumps(document)
            else:
                value = password
        arn = backend.create_secret(
            name=props.get("Name") or resource_name, secret_string=value, secret_binary=None,
            description=props.get("Description"), tags=_tags(props), kms_key_id=props.get("KmsKeyId"),
            client_request_token=None, replica_regions=[], force_overwrite=False)
        arn = json.loads(arn)["ARN"] if isinstance(arn, str) and arn.startswith("{") else arn
        return cls(arn, Id=arn)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):  # type: ignore[override]
        secretsmanager_backends[account_id][region_name].delete_secret(
            secret_id=resource_name, recovery_window_in_days=None, force_delete_without_recovery=True)

    def delete(self, account_id: str, region_name: str) -> None:
        secretsmanager_backends[account_id][region_name].delete_secret(
            secret_id=self._physical_id, recovery_window_in_days=None, force_delete_without_recovery=True)


class SecretTargetAttachment(_Model, CloudFormationModel):
    """Adds the target's connection details to the secret, as the attachment does."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::SecretTargetAttachment"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        return cls(props["SecretId"])


class CacheSubnetGroup(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElastiCache::SubnetGroup"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "CacheSubnetGroupName"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        name = (props.get("CacheSubnetGroupName") or resource_name).lower()
        elasticache_backends[account_id][region_name].create_cache_subnet_group(
            cache_subnet_group_name=name, cache_subnet_group_description=props.get("Description", ""),
            subnet_ids=list(props.get("SubnetIds", [])), tags=_tags(props))
        return cls(name)

    def delete(self, account_id: str, region_name: str) -> None:
        elasticache_backends[account_id][region_name].delete_cache_subnet_group(self._physical_id)


class ReplicationGroup(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElastiCache::ReplicationGroup"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "ReplicationGroupId"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        group_id = (props.get("ReplicationGroupId") or resource_name).lower()[:40]
        backend = elasticache_backends[account_id][region_name]
        group = backend.create_replication_group(
            replication_group_id=group_id,
            replication_group_description=props.get("ReplicationGroupDescription", ""),
            global_replication_group_id=None, primary_cluster_id=None,
            automatic_failover_enabled=bool(props.get("AutomaticFailoverEnabled", False)),
            multi_az_enabled=bool(props.get("MultiAZEnabled", False)),
            num_cache_clusters=int(props.get("NumCacheClusters", 1)),
            preferred_cache_cluster_azs=list(props.get("PreferredCacheClusterAZs", [])),
            num_node_groups=None, replicas_per_node_group=None, node_group_configuration=None,
            cache_node_type=props.get("CacheNodeType"), engine=props.get("Engine", "redis"),
            engine_version=str(props.get("EngineVersion", "")), cache_parameter_group_name=None,
            cache_subnet_group_name=props.get("CacheSubnetGroupName"), cache_security_group_names=[],
            security_group_ids=list(props.get("SecurityGroupIds", [])), tags=_tags(props),
            snapshot_arns=[], snapshot_name=None, preferred_maintenance_window=None,
            port=int(props.get("Port", 6379)), notification_topic_arn=None,
            auto_minor_version_upgrade=bool(props.get("AutoMinorVersionUpgrade", True)),
            snapshot_retention_limit=int(props.get("SnapshotRetentionLimit", 0)), snapshot_window=None,
            auth_token=props.get("AuthToken"),
            transit_encryption_enabled=bool(props.get("TransitEncryptionEnabled", False)),
            at_rest_encryption_enabled=bool(props.get("AtRestEncryptionEnabled", False)),
            kms_key_id=props.get("KmsKeyId"), user_group_ids=[], log_delivery_configurations=[],
            data_tiering_enabled=False, network_type=None, ip_discovery=None,
            transit_encryption_mode=None, cluster_mode="disabled", serverless_cache_snapshot_name=None,
        )
        # The endpoint moto itself reports for the group, so describe calls agree.
        host = group.node_groups[0]["primary_endpoint_address"]
        port = str(props.get("Port", 6379))
        return cls(group.replication_group_id, **{
            "PrimaryEndPoint.Address": host, "PrimaryEndPoint.Port": port,
            "ReaderEndPoint.Address": host.replace("master.", "replica.", 1), "ReaderEndPoint.Port": port,
        })

    def delete(self, account_id: str, region_name: str) -> None:
        elasticache_backends[account_id][region_name].delete_replication_group(self._physical_id, False)


class ScalingPolicy(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::AutoScaling::ScalingPolicy"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        policy = autoscaling_backends[account_id][region_name].put_scaling_policy(
            name=props.get("PolicyName", resource_name), policy_type=props.get("PolicyType", "SimpleScaling"),
            metric_aggregation_type=props.get("MetricAggregationType"),
            adjustment_type=props.get("AdjustmentType"), as_name=props["AutoScalingGroupName"],
            min_adjustment_magnitude=props.get("MinAdjustmentMagnitude"),
            scaling_adjustment=int(props["ScalingAdjustment"]) if "ScalingAdjustment" in props else None,
            cooldown=int(props["Cooldown"]) if "Cooldown" in props else None,
            target_tracking_config=props.get("TargetTrackingConfiguration"),
            step_adjustments=props.get("StepAdjustments"),
            estimated_instance_warmup=props.get("EstimatedInstanceWarmup"),
            predictive_scaling_configuration=props.get("PredictiveScalingConfiguration"))
        return cls(policy.arn, Arn=policy.arn, PolicyName=policy.name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = autoscaling_backends[account_id][region_name]
        for name, policy in list(backend.policies.items()):
            if policy.arn == self._physical_id:
                backend.delete_policy(name)


class Alarm(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        name = props.get("AlarmName") or resource_name
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name, namespace=props.get("Namespace"), metric_name=props.get("MetricName"),
            comparison_operator=props["ComparisonOperator"], evaluation_periods=int(props["EvaluationPeriods"]),
            period=int(props.get("Period", 60)), threshold=float(props["Threshold"]),
            statistic=props.get("Statistic"), description=props.get("AlarmDescription", ""),
            dimensions=[{"Name": d["Name"], "Value": d["Value"]} for d in props.get("Dimensions", [])],
            alarm_actions=list(props.get("AlarmActions", [])))
        return cls(name, Arn=alarm.alarm_arn)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self._physical_id])


class BucketPolicy(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        document = props["PolicyDocument"]
        text = document if isinstance(document, str) else json.dumps(document)
        s3_backends[account_id][get_partition(region_name)].put_bucket_policy(props["Bucket"], text.encode())
        return cls(props["Bucket"])

    def delete(self, account_id: str, region_name: str) -> None:
        s3_backends[account_id][get_partition(region_name)].delete_bucket_policy(self._physical_id)


class SecurityGroupEgress(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::SecurityGroupEgress"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        ip_ranges = [{"CidrIp": props["CidrIp"], "Description": props.get("Description", "")}] if "CidrIp" in props else []
        groups = ([{"GroupId": props["DestinationSecurityGroupId"], "Description": props.get("Description", "")}]
                  if "DestinationSecurityGroupId" in props else [])
        rules, _ = ec2_backends[account_id][region_name].authorize_security_group_egress(
            group_name_or_id=props["GroupId"], ip_protocol=str(props["IpProtocol"]),
            from_port=props.get("FromPort"), to_port=props.get("ToPort"),
            ip_ranges=ip_ranges, source_groups=groups)
        return cls(rules[0].id if rules else resource_name)


MODELS = [Secret, SecretTargetAttachment, CacheSubnetGroup, ReplicationGroup, ScalingPolicy, Alarm,
          BucketPolicy, SecurityGroupEgress]


# -- Service Catalog (the backend calls are in servicecatalog.py) ------------------------------

def _catalog(account_id: str, region_name: str):
    from moto.servicecatalog.models import servicecatalog_backends

    return servicecatalog_backends[account_id][region_name]


class Portfolio(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ServiceCatalog::Portfolio"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties", {})
        detail, _ = _catalog(account_id, region_name).create_portfolio(
            accept_language=None, display_name=props["DisplayName"], description=props.get("Description"),
            provider_name=props["ProviderName"], tags=_tags(props), idempotency_token=None)
        return cls(detail["Id"], PortfolioName=props["DisplayName"])

    def delete(self, account_id: str, region_name: str) -> None:
        _catalog(account_id, region_name).delete_portfolio(None, self._physical_id)


class CloudFormationProduct(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ServiceCatalog::CloudFormationProduct"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        from gitlab_cfn.standin.servicecatalog import add_artifact, fetch_template

        props = cloudformation_json.get("Properties", {})
        artifacts = props.get("ProvisioningArtifactParameters") or []
        for artifact in artifacts:
            fetch_template(account_id, (artifact.get("Info") or {}).get("LoadTemplateFromURL"))
        backend = _catalog(account_id, region_name)
        product = backend.create_product(
            name=props["Name"], owner=props["Owner"], description=props.get("Description"),
            distributor=props.get("Distributor"), support_description=props.get("SupportDescription"),
            support_email=props.get("SupportEmail"), support_url=props.get("SupportUrl"),
            product_type=props.get("ProductType", "CLOUD_FORMATION_TEMPLATE"), tags=_tags(props),
            provisioning_artifact_parameters=None)
        created = [add_artifact(backend, product.id, artifact, fetched=True) for artifact in artifacts]
        return cls(product.id, ProductName=props["Name"],
                   ProvisioningArtifactIds=",".join(a["Id"] for a in created),
                   ProvisioningArtifactNames=",".join(a["Name"] for a in created))

    def delete(self, account_id: str, region_name: str) -> None:
        _catalog(account_id, region_name).delete_product(None, self._physical_id)


class PortfolioProductAssociation(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ServiceCatalog::PortfolioProductAssociation"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        from gitlab_cfn.standin.servicecatalog import associate_product

        props = cloudformation_json.get("Properties", {})
        associate_product(_catalog(account_id, region_name), props["PortfolioId"], props["ProductId"])
        model = cls(f"{props['PortfolioId']}|{props['ProductId']}")
        model.ids = (props["PortfolioId"], props["ProductId"])
        return model

    def delete(self, account_id: str, region_name: str) -> None:
        from gitlab_cfn.standin.servicecatalog import disassociate_product

        disassociate_product(_catalog(account_id, region_name), *self.ids)


class PortfolioPrincipalAssociation(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ServiceCatalog::PortfolioPrincipalAssociation"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        from gitlab_cfn.standin.servicecatalog import associate_principal

        props = cloudformation_json.get("Properties", {})
        associate_principal(_catalog(account_id, region_name), props["PortfolioId"], props["PrincipalARN"],
                            props["PrincipalType"])
        model = cls(f"{props['PortfolioId']}|{props['PrincipalARN']}")
        model.ids = (props["PortfolioId"], props["PrincipalARN"])
        return model

    def delete(self, account_id: str, region_name: str) -> None:
        from gitlab_cfn.standin.servicecatalog import disassociate_principal

        disassociate_principal(_catalog(account_id, region_name), *self.ids)


class LaunchRoleConstraint(_Model, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ServiceCatalog::LaunchRoleConstraint"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        from gitlab_cfn.standin.servicecatalog import create_constraint

        props = cloudformation_json.get("Properties", {})
        parameters = {k: props[k] for k in ("RoleArn", "LocalRoleName") if props.get(k)}
        constraint = create_constraint(_catalog(account_id, region_name), props["PortfolioId"], props["ProductId"],
                                       "LAUNCH", json.dumps(parameters), props.get("Description", ""))
        return cls(constraint["ConstraintId"])

    def delete(self, account_id: str, region_name: str) -> None:
        from gitlab_cfn.standin.servicecatalog import delete_constraint

        delete_constraint(_catalog(account_id, region_name), self._physical_id)


MODELS += [Portfolio, CloudFormationProduct, PortfolioProductAssociation, PortfolioPrincipalAssociation,
           LaunchRoleConstraint]
