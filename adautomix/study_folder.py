"""A study's folder on disk: ``state.json`` (what ``--resume`` checks and reopens),
``study.yaml`` (the study file as it ran), and the results: ``results.md``, ``results.csv``,
``results.png``. Ray Tune's experiment lives beside them in ``trials/``. Layout: docs/studies.md.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .evaluation import figures, report
from .study import Study, StudyError

STATE = "state.json"
ROOT = "runs/studies"


def new_study_dir(study: Study, root: str | Path = ROOT) -> Path:
    return (Path(root) / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()


def latest_study_dir(study: Study, root: str | Path = ROOT) -> Path:
    """The newest folder of this study that has a ``state.json`` (for ``--resume``)."""
    found = sorted(p.parent for p in Path(root).glob(f"{study.name}-*/{STATE}"))
    if not found:
        raise StudyError(f"--resume: no started study {study.name!r} under {root}/ "
                         f"(expected {root}/{study.name}-<time>/{STATE}); run it without --resume")
    return found[-1].resolve()


def read_state(study: Study, study_dir: Path) -> dict:
    """``study_dir``'s ``state.json``, checked to be of ``study`` (same file, overrides, smoke)."""
    if not (study_dir / STATE).exists():
        raise StudyError(f"--resume: {study_dir} holds no {STATE}")
    state = json.loads((study_dir / STATE).read_text())
    if state["fingerprint"] != study.fingerprint():
        raise StudyError(f"--resume: {study_dir} was started with a different study file, "
                         "overrides or --smoke; run without --resume to start a new study")
    return state


def start(study: Study, study_dir: Path) -> None:
    """Make ``study_dir`` for a new run of ``study``; ``StudyError`` if it holds one already."""
    if (study_dir / STATE).exists():
        raise StudyError(f"{study_dir} already holds a study; add --resume to continue it")
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "study.yaml").write_text(study.text)


def write_state(study: Study, study_dir: Path, tracking: dict) -> None:
    """``state.json``: the study's identity and ``tracking`` (its MLflow URI, password masked,
    experiment and parent run ids), written atomically."""
    state = {"study": study.name, "study_file": str(study.path.resolve()), "fingerprint": study.fingerprint(),
             "overrides": study.overrides, "smoke": study.smoke, **tracking,
             "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = study_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, study_dir / STATE)


def write_results(study: Study, study_dir: Path, results: report.Table) -> list[Path]:
    """``results.md`` (the table, linking the figure), ``results.csv`` and ``results.png``."""
    md = study_dir / "results.md"
    md.write_text(f"# Study {study.name}\n\n" + (f"{study.description}\n\n" if study.description else "")
                  + f"{report.markdown(results)}\n\n" + ("![results](results.png)\n" if results.rows else ""))
    files = [md, report.write_csv(study_dir / "results.csv", results)]
    if results.rows:
        log_keys = tuple(k for k, v in study.space.items() if isinstance(v, dict) and "loguniform" in v)
        files.append(figures.save(study_dir / "results.png", results, study.name, log_keys))
    return files
