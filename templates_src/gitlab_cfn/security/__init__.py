"""The security gate run by ``gitlab-cfn check``: checkov, and IAM policy analysis."""
