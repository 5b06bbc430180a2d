"""Tools around the library, built on ``resizeops.core`` and ``resizeops.models`` (docs/DESIGN.md, "Map of the code").

``rf/`` receptive-field analysis, ``bench/`` benchmarks, ``demo.py`` the digits
demo: ``python -m resizeops rf | bench | bench-train | demo``. ``resizeops.rf``,
``resizeops.bench`` and ``resizeops.demo`` stay importable.
"""
