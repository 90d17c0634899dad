"""Compile: a build config in, the nested CloudFormation templates out.

``config`` (typed build settings) and ``choices`` (the values they may take),
``catalog`` (every parameter a launcher fills in), ``naming`` (logical ids, tags,
template keys), ``tier`` and ``tiers/`` (one nested template each), ``wiring``
(the parent), ``policies`` (awacs), ``instances`` and ``userdata`` (launch
templates and what they boot), ``service_catalog`` and ``launch_role`` (the
portfolio), ``constraints`` (the parent's parameter rules), and ``compiler``,
which writes the build. Nothing here talks to AWS or imports from ``verify``,
``operate`` or ``cli``.
"""
