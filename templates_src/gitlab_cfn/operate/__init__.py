"""Operate: what ``gitlab-cfn`` does against AWS (or the local stand-in).

``aws`` (the boto3 session), ``progress`` (what long commands print), ``deploy``,
``destroy``, ``publish``, ``portfolio`` (``catalog publish``), ``bake`` (the GitLab
AMI) and ``local`` (the demo values ``--local`` fills in). Uses ``verify`` and
``compile``; never imported by them.
"""
