"""`dltool serve`'s server: TF Serving's REST protocol, dltool's ``:label``, dynamic batching, metrics.

Needs the ``serve`` extra (Starlette, uvicorn, prometheus_client, python-multipart); import the
submodules only after :func:`dltool.commands.serve.require_serve_extra`.
"""
