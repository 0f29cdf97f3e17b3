"""An example Wilson evaluator package: ``label-set`` (see ``labels.py``)."""
