"""Benchmarks a user can run on their own machine (``multicon bench word2vec | images |
captions``): each module has ``build_parser()`` and ``main(argv)`` and prints a JSON report with
the command that made it."""
