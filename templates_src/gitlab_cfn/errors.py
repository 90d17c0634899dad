"""The two ways a command fails, and the exit codes they map to."""


class GitlabCfnError(Exception):
    exit_code = 1


class ConfigError(GitlabCfnError):
    """Bad input from the user: a config field, a file, an argument. Exit 2."""

    exit_code = 2


class CheckFailed(GitlabCfnError):
    """A gate (lint, scan) found problems in what was built. Exit 1."""

    exit_code = 1
