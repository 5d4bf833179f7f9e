"""The web dashboard at ``/ui`` (cold path, built on its first request).

    app.py        create_ui_app(...): the Starlette app: static pages, sign-in, the JSON API
    session.py    signed session tokens with an expiry, and the CSRF token bound to each
    guard.py      who may reach /ui/api (a valid session, the CSRF token, the same origin) and
                  the security headers every /ui answer carries
    queries.py    what the charts, log and health views read: bounded queries over the hourly
                  rollups and the request records
    routes.py     the /ui/api endpoints
    static/       index.html, app.js (a plain ES module), style.css and the vendored uPlot

The admin API is reached from the page through ``/ui/api/admin/...``: the same admin app the
gateway serves at ``/admin``, let in by a valid session and its CSRF token instead of the
Bearer master key (``guard.AdminThroughSession``).
"""
