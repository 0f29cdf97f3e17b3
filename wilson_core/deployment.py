"""The record of one deployment, written beside its artefacts by ``wilson deploy`` and the pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def report_dict(report: Any) -> dict[str, Any]:
    """A :class:`~wilson_core.interfaces.DeployReport` as plain JSON data."""
    return {
        "target": report.target,
        "out": report.out,
        "files": list(report.files),
        "provider": report.provider,
        "passed": report.passed,
        "checks": [
            {"name": c.name, "passed": c.passed, "detail": c.detail, "metrics": dict(c.metrics)}
            for c in report.checks
        ],
        "notes": list(report.notes),
        "seconds": round(report.seconds, 3),
        "details": dict(report.details),
    }


def run_deployer(deployer: Any, config: Any) -> Any:
    """``deployer.deploy(config)``, timed when the deployer does not time itself; then
    ``OUT/wilson-deploy.json`` (what was deployed and verified) and the deployment's card."""
    import attrs

    from wilson_core.modelcard import write_deployment_card

    started = time.perf_counter()
    report = deployer.deploy(config)
    if not report.seconds:
        report = attrs.evolve(report, seconds=time.perf_counter() - started)
    record = Path(report.out) / "wilson-deploy.json"
    if record.parent.is_dir():
        record.write_text(json.dumps(report_dict(report), indent=2, default=str) + "\n", encoding="utf-8")
        write_deployment_card(report, model=config.model, adapter=config.adapter, quant=config.quant)
    return report
