"""YAML (and JSON) read as data, refusing a key given twice in one mapping.

PyYAML's ``safe_load`` keeps the last of two equal keys without a word, so a
config or parameter file that sets ``az_count`` twice silently means the second.
YAML 1.2 says mapping keys are unique ("The content of a mapping node is an
unordered set of key/value node pairs, with the restriction that each of the keys
is unique", https://yaml.org/spec/1.2.2/#nodes); this loader holds files to it.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names the same key twice; ``key`` and ``line`` (1-based) say where."""

    def __init__(self, key: Any, line: int, first: int):
        super().__init__(None, None, f"key {key!r} given twice (lines {first} and {line})", None)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the constructor refuses it with its own error
            continue
        line = key_node.start_mark.line + 1
        if first is not None:
            raise DuplicateKey(key, line, first)
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str) -> Any:
    """``yaml.safe_load`` that raises ``DuplicateKey`` for a key given twice."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
