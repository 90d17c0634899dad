"""``service-catalog.template.yaml``: GitLab as an AWS Service Catalog product.

A standalone stack, launched once per region by the platform team: a
portfolio, a CloudFormation product whose first version (provisioning
artifact) is the published main template (``product.template.yaml``: its
location parameters filled in), the portfolio's association with
the product and with the IAM role or group of the teams who may launch it, and
a launch role constraint. The launch role (``launch_role``) allows what the
product's stacks create, derived from the templates of the same build.

Later versions are added with ``gitlab-cfn catalog publish``; the stack's own
product keeps the version it was created with.
"""

from __future__ import annotations

from troposphere import (
    GetAtt,
    Output,
    Parameter,
    Ref,
    Sub,
    Template,
    iam,
    servicecatalog,
)

from gitlab_cfn import __version__
from gitlab_cfn.compile import launch_role
from gitlab_cfn.compile.catalog import VERSION_PATTERN, ParamSpec
from gitlab_cfn.compile.naming import IAM_PATH, TEMPLATE_DIR
from gitlab_cfn.compile.policies import assume_role
from gitlab_cfn.compile.wiring import LOCATION_PARAMETERS as LOCATION
from gitlab_cfn.compile.wiring import PUBLISHED

FILE = "service-catalog.template.yaml"
PRINCIPAL_PATTERN = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(role|group)/[\w+=,.@/-]+$"

# What `gitlab-cfn publish` writes next to the build: the main template, its location
# parameters defaulting to where it is published.
PRODUCT_TEMPLATE_URL = PUBLISHED + TEMPLATE_DIR + "/${ProductTemplate}"


def _parameters(t: Template, specs: dict[str, ParamSpec]) -> None:
    for name in LOCATION:
        t.add_parameter(Parameter(name, **specs[name].as_properties()))
    t.add_parameter(Parameter(
        "ProductVersion", Type="String", Default=__version__, AllowedPattern=VERSION_PATTERN,
        Description="Name of the product's first version: the published --version.",
        ConstraintDescription="letters, digits, '.', '_' and '-' (up to 64), e.g. 0.1.0"))
    t.add_parameter(Parameter(
        "ProductTemplate", Type="String", Default="product.template.yaml",
        AllowedValues=["product.template.yaml", "main.template.yaml"],
        Description="What the product launches: product.template.yaml (written by gitlab-cfn publish: the main "
                    "template with the template location filled in) or main.template.yaml (launchers give the "
                    "location themselves; for builds uploaded by other tools, such as taskcat).",
        ConstraintDescription="product.template.yaml or main.template.yaml"))
    t.add_parameter(Parameter(
        "PrincipalArn", Type="String", AllowedPattern=PRINCIPAL_PATTERN,
        Description="ARN of the IAM role or group whose members may launch GitLab from the portfolio.",
        ConstraintDescription="must be an IAM role or group ARN, e.g. arn:aws:iam::123456789012:role/Developers"))
    t.add_parameter(Parameter(
        "PortfolioName", Type="String", Default="GitLab", MinLength=1, MaxLength=100,
        Description="Display name of the portfolio.",
        ConstraintDescription="1 to 100 characters"))
    t.add_parameter(Parameter(
        "ProviderName", Type="String", Default="Platform engineering", MinLength=1, MaxLength=50,
        Description="Who provides the portfolio and the product (shown to the teams who launch it).",
        ConstraintDescription="1 to 50 characters"))
    t.set_metadata({"AWS::CloudFormation::Interface": {
        "ParameterGroups": [
            {"Label": {"default": "Portfolio"}, "Parameters": ["PortfolioName", "ProviderName", "PrincipalArn"]},
            {"Label": {"default": "Published templates"},
             "Parameters": ["ProductVersion", *LOCATION, "ProductTemplate"]},
        ],
        "ParameterLabels": {
            "PortfolioName": {"default": "Portfolio name"},
            "ProviderName": {"default": "Provider"},
            "PrincipalArn": {"default": "Who may launch (IAM role or group ARN)"},
            "ProductVersion": {"default": "First product version"},
            "ProductTemplate": {"default": "Template the product launches"},
            **{name: {"default": specs[name].label} for name in LOCATION},
        },
    }})


def build(specs: dict[str, ParamSpec], product_templates: dict[str, dict]) -> Template:
    """The portfolio template; ``specs`` are the build's parameters (for the template
    location), ``product_templates`` its decoded templates (parent and tiers), from
    which the launch role is derived."""
    t = Template(Description="gitlab-cfn: GitLab on AWS as a Service Catalog product "
                             "(portfolio, product, access and launch role)")
    t.set_version("2010-09-09")
    _parameters(t, specs)

    portfolio = t.add_resource(servicecatalog.Portfolio(
        "Portfolio", DisplayName=Ref("PortfolioName"), ProviderName=Ref("ProviderName"),
        Description="Self-managed GitLab on AWS, as GitLab's reference architecture describes it.",
    ))
    product = t.add_resource(servicecatalog.CloudFormationProduct(
        "Product",
        Name="GitLab",
        Owner=Ref("ProviderName"),
        Distributor="gitlab-cfn",
        Description="GitLab across two or three availability zones: load balancer, Auto Scaling group, "
                    "RDS PostgreSQL Multi-AZ, ElastiCache Redis, Gitaly, S3 object storage.",
        SupportDescription="Provisioned with gitlab-cfn; ask the portfolio's provider.",
        ProvisioningArtifactParameters=[servicecatalog.ProvisioningArtifactProperties(
            Name=Ref("ProductVersion"),
            Description=Sub("gitlab-cfn templates ${ProductVersion}"),
            Info=servicecatalog.Info(LoadTemplateFromURL=Sub(PRODUCT_TEMPLATE_URL)),
            Type="CLOUD_FORMATION_TEMPLATE",
        )],
    ))
    association = t.add_resource(servicecatalog.PortfolioProductAssociation(
        "PortfolioProduct", PortfolioId=Ref(portfolio), ProductId=Ref(product)))
    t.add_resource(servicecatalog.PortfolioPrincipalAssociation(
        "PortfolioPrincipal", PortfolioId=Ref(portfolio), PrincipalARN=Ref("PrincipalArn"),
        PrincipalType="IAM"))

    need = launch_role.needs(product_templates)
    docs = launch_role.documents(
        launch_role.statements(need) + launch_role.template_read("TemplateBucketName"))
    policies = [t.add_resource(iam.ManagedPolicy(
        f"LaunchRolePolicy{i}", Path=IAM_PATH, PolicyDocument=doc,
        # No "of N": Description is create-only, and a build whose needs take one more part
        # would otherwise replace every part.
        Description=f"GitLab product launch role, part {i}: what the product's stacks create.",
    )) for i, doc in enumerate(docs, start=1)]
    role = t.add_resource(iam.Role(
        "LaunchRole",
        Path=IAM_PATH,
        Description="Assumed by Service Catalog to launch, update and terminate the GitLab product.",
        AssumeRolePolicyDocument=assume_role("servicecatalog.amazonaws.com"),
        ManagedPolicyArns=[Ref(p) for p in policies],
    ))
    t.add_resource(servicecatalog.LaunchRoleConstraint(
        "LaunchConstraint", PortfolioId=Ref(portfolio), ProductId=Ref(product), RoleArn=GetAtt(role, "Arn"),
        Description="Launch GitLab with the product's launch role.", DependsOn=[association.title],
    ))

    t.add_output(Output("PortfolioId", Value=Ref(portfolio), Description="Service Catalog portfolio id."))
    t.add_output(Output("ProductId", Value=Ref(product), Description="Service Catalog product id."))
    t.add_output(Output("ProductVersion", Value=Ref("ProductVersion"), Description="The product's first version."))
    t.add_output(Output("LaunchRoleArn", Value=GetAtt(role, "Arn"), Description="Role Service Catalog launches with."))
    return t
