"""The library's commands: each works from a run folder through the layers below it (inputs, metrics, training).

A package of its own so that the lazy functions ``dltool.evaluate`` and ``dltool.predict`` (see
``dltool/__init__.py``) are not shadowed by submodules of the same names.
"""
