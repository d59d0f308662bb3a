"""The library's commands: whole operations on runs (train, evaluate, predict, reports), through the layers below.

A package of its own so that the lazy functions ``dltool.train``, ``dltool.evaluate`` and ``dltool.predict`` (see
``dltool/__init__.py``) are not shadowed by submodules of the same names.
"""
