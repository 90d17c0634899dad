"""gitlab-cfn's own cfn-lint rules (E9xxx), one rule per file, loaded by ``lint``.

Each rule has a good and a bad fixture under ``tests/data/lint_rules/<id>/``.
"""
