"""Use cases: each opens its own transaction, applies ``backoffice.rules`` and audits changes."""
