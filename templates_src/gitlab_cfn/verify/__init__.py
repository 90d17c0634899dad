"""Verify: the gates a build must pass before anyone deploys it.

``lint`` runs cfn-lint with the project's own rules (``lint_rules/``, E9xxx);
``gate`` is ``gitlab-cfn check``: ``checkov`` and ``iam`` (parliament and the
project's IAM rules); ``replacement`` is the guard that lists what an update
would replace or delete. Reads builds written by ``compile``; never talks to AWS.
"""
