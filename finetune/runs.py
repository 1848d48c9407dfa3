"""``runs/NAME/``: the resolved config, metrics JSONL, loss and reward curves, and checkpoints.

Layout::

    runs/NAME/config.json      the resolved config of the run
    runs/NAME/metrics.jsonl    one JSON object per logged step (loss, learning rate, rewards, ...)
    runs/NAME/loss.png         training (and eval) loss per step
    runs/NAME/reward.png       reward curves, for methods that log them
    runs/NAME/checkpoints/     checkpoint-STEP folders, each renamed into place once complete
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from roost.errors import RoostError
from roost.store import Store, validate_name

logger = logging.getLogger(__name__)

# Settings a resumed run may change: they do not alter what is trained.
_RUN_ONLY = {"resume", "progress", "hot_load", "overwrite", "skip_invalid"}

# Curves drawn in reward.png when the method logs them (GRPO, DPO, reward model).
REWARD_KEYS = ("reward", "rewards/chosen", "rewards/rejected", "rewards/margins", "accuracy", "margin")


class RunDir:
    """The run folder of one adapter name."""

    def __init__(self, store: Store, name: str) -> None:
        self.path = store.runs_dir / validate_name(name)
        self.checkpoints = self.path / "checkpoints"
        self.metrics = self.path / "metrics.jsonl"

    def start(self, config: dict[str, Any], *, resume: bool, overwrite: bool) -> Path | None:
        """Prepare the folder; return the checkpoint to resume from (None for a fresh run).

        Raises:
            RoostError: on --resume without a complete checkpoint, or when an earlier run left checkpoints
                and neither --resume nor --overwrite says what to do with them.
        """
        from finetune.trainers import last_checkpoint

        checkpoint = last_checkpoint(self.checkpoints)
        if resume:
            if checkpoint is None:
                raise RoostError(f"--resume: no complete checkpoint in {self.checkpoints}; start without --resume")
            self._check_same_config(config)
            self._truncate_metrics(_step_of(checkpoint))
            logger.info("resuming from %s", checkpoint)
        else:
            if checkpoint is not None and not overwrite:
                raise RoostError(
                    f"{self.path} holds checkpoints of an unfinished run: pass --resume to continue it, "
                    "or --overwrite to start over"
                )
            shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
        return checkpoint if resume else None

    def finish(self) -> None:
        """Drop the checkpoints of a run whose result is now in the store; keep metrics and curves."""
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def _check_same_config(self, config: dict[str, Any]) -> None:
        """A resumed run must train what the interrupted one trained; only how it runs may change."""
        file = self.path / "config.json"
        if not file.is_file():
            return
        before = json.loads(file.read_text(encoding="utf-8"))
        for key, value in config.items():
            if key not in _RUN_ONLY and key in before and before[key] != value:
                raise RoostError(f"--resume: {key} was {before[key]!r} in the interrupted run, now {value!r}; "
                                 "resume with the same settings or start over with --overwrite")

    def _truncate_metrics(self, step: int) -> None:
        # Steps logged after the checkpoint will be logged again by the resumed run.
        if self.metrics.is_file():
            kept = [line for line in self.metrics.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            self.metrics.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]

    def plot(self) -> list[Path]:
        """Write loss.png (and reward.png when rewards were logged); return the files written."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read_metrics()
        written = []
        for file, keys, ylabel in (("loss.png", ("loss", "eval_loss"), "loss"), ("reward.png", REWARD_KEYS, "reward")):
            series = {key: [(r["step"], r[key]) for r in rows if _finite(r.get(key))] for key in keys}
            series = {key: points for key, points in series.items() if points}
            if not series:
                continue
            fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
            for key, points in series.items():
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker="." if len(points) < 50 else None, label=key)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{self.path.name}: {ylabel}")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            fig.savefig(self.path / file)
            plt.close(fig)
            written.append(self.path / file)
        return written


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def metrics_callback(run: RunDir) -> Any:
    """A TrainerCallback appending every log to ``runs/NAME/metrics.jsonl``."""
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            row = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3)}
            row.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
            with open(run.metrics, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    return MetricsLog()
