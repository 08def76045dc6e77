"""«Дарим» back office: the admin panel / CRM API the assistant's actions call.

Run it with ``python -m backoffice serve``; fill a demo database with ``python -m backoffice seed``.
Nothing happens on import: the app is built by :func:`backoffice.app.create_app`.
"""
