"""Code of the stack's Lambda-backed custom resources, kept here so it is linted and tested
like the rest; a tier inlines a module's text as the function's ``ZipFile``."""
