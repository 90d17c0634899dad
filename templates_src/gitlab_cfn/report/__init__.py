"""What a build will cost, how long it takes to deploy, and what it draws: read from the built
templates alone (resource types, properties, parameter defaults, Mappings), so a new tier or size
is priced, modelled and drawn without code changes.

Layer: between ``verify`` and ``operate``; it reads builds (``compile`` for ``--config``) and
never talks to AWS except for ``estimate --live`` (the Price List API).
"""
