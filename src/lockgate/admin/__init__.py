"""The admin API (``/admin/*``, cold path) and the operations behind it.

    app.py        create_admin_app(store, config): the Starlette app the gateway mounts at /admin
    auth.py       the master-key check, a pure ASGI middleware in front of every admin route
    control.py    teams and keys: create, change, revoke, audit; free of HTTP, so that
                  ``lockgate keys`` runs exactly the same code as the API
    schemas.py    request bodies and query strings (pydantic, unknown fields rejected)
    views.py      stored rows -> the JSON users see (never a secret or a hash)
    http.py       JSON responses, body/query parsing, errors in the OpenAI shape
    teams.py, keys.py, usage.py    the routes

Nothing is imported here, so that the CLI can use ``control`` without loading Starlette.
"""
