"""The recipes: one module per method and modality, each with a ``main(argv)`` that parses its
flags, trains, evaluates and saves a Hub-ready model folder.

``python -m multicon.recipes.simclr --help`` (or ``accelerate launch -m multicon.recipes.simclr``)
runs one; ``recipes/*.py`` in the repository are thin scripts around the same code.
"""
