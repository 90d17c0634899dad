"""gitlab-cfn: self-managed GitLab on AWS, compiled into nested CloudFormation."""

__version__ = "0.1.0"
