"""What goes into a network, built on ``resizeops.core`` (docs/DESIGN.md, "Map of the code").

``nn.py`` the layers, shapes as state; ``convert.py`` puts learnable resizers into
an existing network, with ``_netgraph.py`` (what it learns of the network first);
``dynopool.py`` and ``shape_adaptor.py`` the training recipes; ``report.py`` a
model's learned sizes and MACs. ``resizeops`` re-exports the public names, and
``resizeops.nn``, ``resizeops.convert``, ``resizeops.dynopool``,
``resizeops.shape_adaptor``, ``resizeops.report`` stay importable.
"""
