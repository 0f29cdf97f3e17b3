"""``wilson pipeline run``: the loop as configuration (``[tool.wilson.pipeline]``).

export -> train -> evaluate -> gate -> deploy, each stage's driver named by its entry
point with its options.  :mod:`.config` reads and validates the table (before anything
heavy runs), :mod:`.gate` decides promotion, :mod:`.runner` runs the stages under a run
folder and registers the model (:mod:`wilson_core.store.registry`), :mod:`.ab` prepares
and records blind A/B review.  See ``docs/pipeline.md``.
"""

from __future__ import annotations

STAGES = ("export", "train", "evaluate", "gate", "deploy")
