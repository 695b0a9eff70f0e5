"""The trainer: builds everything from a TrainConfig and runs the epochs.

Rank 0 alone writes the run directory (training/config.py RUN_OUTPUTS: docs/TRAINING.md's
list, checked against a run by tests/training/trainer/test_cli.py) and evaluates; the other
ranks wait at a barrier. See training/engine/checkpointing.py for what a checkpoint holds.
"""

from __future__ import annotations

import copy
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from model.checkpoint import save_weights_only
from model.config import get_preset
from model.fcos import FCOS
from training.config import TrainConfig, save_config
from training.data.loaders import DataBundle, build_data
from training.engine import distributed as dist_utils
from training.engine.backbone_weights import load_backbone_weights
from training.engine.budget import RESERVE, plan_epochs
from training.engine.checkpointing import (
    atomic_save,
    build_checkpoint,
    load_for_resume,
    load_init_weights,
    restore_training_state,
    rng_state,
)
from training.engine.ema import ModelEMA
from training.engine.loop import LOSS_KEYS, StepContext, TrainForward, train_one_epoch, use_autocast
from training.engine.losses import FCOSLoss
from training.engine.optim import build_optimizer
from training.engine.runlog import RunLog, brief_metrics
from training.engine.schedule import WarmupCosine
from training.engine.transfer import freeze_backbone
from training.engine.validation import evaluate_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: TrainConfig, info: dist_utils.DistInfo | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.info = info or dist_utils.init_distributed(cfg.device)
        self.device = self.info.device
        cuda = self.device.type == "cuda"
        self.run_dir = Path(cfg.output_dir)
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir)
        self.log = RunLog(self.run_dir, enabled=self.info.is_main)
        seed_everything(cfg.seed)

        self.data: DataBundle = build_data(cfg, self.info, self._mosaic_mixup)
        if self.data.hsv_on_device:
            self._print(f"HSV jitter: drawn by the loader, applied on {self.device}")
        base = get_preset(cfg.preset, class_names=self.data.class_names)
        self.model_cfg = base.replace(
            input_size=cfg.resolved_input_size(), centerness_branch=cfg.centerness_branch
        )
        if cfg.data and self.info.is_main:
            self._check_data()
        self.model = FCOS(self.model_cfg)
        if cfg.backbone_weights:
            report = load_backbone_weights(self.model.backbone, cfg.backbone_weights)
            self._print(report.summary())
        self.setup_s = 0.0  # spent before fit() on work the time budget counts
        if cfg.init_weights and not cfg.resume:
            self._print(load_init_weights(self.model, cfg.init_weights))
            if cfg.init_classes == "similar":
                self._init_similar_classes()
        if cfg.freeze_at:
            frozen = freeze_backbone(self.model, cfg.freeze_at)
            self._print(f"backbone: the first {cfg.freeze_at} parts frozen ({frozen} parameters)")
        self.model.to(self.device)
        self.channels_last = cfg.channels_last and cuda
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

        total_batch = cfg.batch_size * self.info.world_size
        self.base_lr = cfg.lr * total_batch / cfg.lr_base_batch if cfg.lr_base_batch else cfg.lr
        betas = (float(cfg.betas[0]), float(cfg.betas[1]))
        self.optimizer = build_optimizer(self.model, self.base_lr, cfg.weight_decay, betas, cuda)
        self.iters_per_epoch = len(self.data.stream)
        warmup = cfg.warmup_iters or round(cfg.warmup_epochs * self.iters_per_epoch)
        self.scheduler = WarmupCosine(self.base_lr, cfg.epochs * self.iters_per_epoch, warmup,
                                      cfg.min_lr_ratio, cfg.warmup_start_ratio)  # fmt: skip
        self.ema = ModelEMA(self.model, cfg.ema_decay, cfg.ema_tau) if cfg.ema_decay else None
        self.loss_fn = FCOSLoss(self.model_cfg.num_classes, self.model_cfg.strides,
                                center_radius=cfg.center_radius or None,
                                box_loss=cfg.box_loss)  # fmt: skip

        self.start_epoch, self.best_map50 = 0, -1.0
        self._last_plot = -float("inf")
        if cfg.resume:
            ckpt = load_for_resume(cfg.resume)
            self.start_epoch, self.best_map50 = restore_training_state(
                ckpt, model=self.model, ema=self.ema, optimizer=self.optimizer,
                scheduler=self.scheduler, rank=self.info.rank,
            )  # fmt: skip
            self.log.truncate_after(self.start_epoch)
            self._print(f"resumed from {cfg.resume} at epoch {self.start_epoch}")

        forward: torch.nn.Module = TrainForward(self.model)
        if self.info.enabled:
            forward = DistributedDataParallel(
                forward, device_ids=[self.device.index] if cuda else None,
                broadcast_buffers=False, gradient_as_bucket_view=True,
            )  # fmt: skip
        if cfg.compile:
            forward = torch.compile(forward)  # type: ignore[assignment]
        self.ctx = StepContext(
            model=self.model, forward=forward, loss_fn=self.loss_fn, optimizer=self.optimizer,
            scheduler=self.scheduler, ema=self.ema, device=self.device,
            normalize=self.data.normalize, amp=use_autocast(self.device, cfg.amp, cfg.cpu_amp),
            channels_last=self.channels_last, grad_clip=cfg.grad_clip,
            world_size=self.info.world_size, log_interval=max(1, cfg.log_interval),
            progress=cfg.progress, is_main=self.info.is_main, log=self.log,
            params=[p for p in self.model.parameters() if p.requires_grad],
        )  # fmt: skip

    def _init_similar_classes(self) -> None:
        """--init-classes similar: new classes' rows from their most similar source class
        (training/engine/class_init.py); every rank computes the same rows."""
        from training.engine.class_init import similar_class_init

        cfg = self.cfg
        done = similar_class_init(
            self.model, cfg.init_weights, self.data.train_samples,
            center_radius=cfg.center_radius or None, max_images=cfg.init_classes_images,
            seed=cfg.seed, device=self.device,
        )  # fmt: skip
        if done is not None:
            self._print(done[0])
            self.setup_s = done[1]
            self.log.write({"type": "class_init", "epoch": 0, "time_s": done[1],
                            "summary": done[0].strip()})  # fmt: skip

    def _check_data(self) -> None:
        """The dataset check (training/check.py) in the log and as plots/data.png."""
        try:
            from training.check import plot_check
            from training.data.check import check_dataset, format_check

            check = check_dataset(self.cfg.data, self.model_cfg.input_size,
                                  classes=self.data.class_names)  # fmt: skip
            self._print(format_check(check))
            plot_check(check, self.run_dir / "plots" / "data.png")
        except Exception as exc:  # the check informs; it must never stop a run
            warnings.warn(f"dataset check failed: {exc}", stacklevel=1)

    def _print(self, msg: str) -> None:
        if self.info.is_main:
            print(msg, flush=True)

    @property
    def eval_model(self) -> FCOS:
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def _mosaic_mixup(self, epoch: int) -> bool:
        """Mosaic/MixUp on for `epoch`? Off for the last no_aug_epochs of the current plan."""
        return epoch <= self.cfg.epochs - self.cfg.no_aug_epochs

    def _should_eval(self, epoch: int) -> bool:
        interval = self.cfg.eval_interval
        if not self.data.val_samples or interval < 1:  # 0: no validation
            return False
        return epoch % interval == 0 or epoch == self.cfg.epochs

    def _checkpoint(self, epoch: int, metrics: dict[str, Any], rng: list) -> dict[str, Any]:
        return build_checkpoint(
            model=self.model, ema=self.ema, optimizer=self.optimizer, scheduler=self.scheduler,
            epoch=epoch, best_map50=self.best_map50, metrics=metrics,
            model_config=self.model_cfg.to_dict(), train_config=self.cfg.to_dict(), rng=rng,
        )  # fmt: skip

    def _epoch_means(self, stats: dict[str, float]) -> dict[str, float]:
        if not self.info.enabled:
            return stats
        local = torch.tensor([stats[k] for k in LOSS_KEYS], device=self.device)
        reduced = dist_utils.all_reduce_mean(local, self.info).tolist()
        return {**stats, **dict(zip(LOSS_KEYS, reduced, strict=True))}

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        # The budget counts the class probe and the auto recipe's speed probe.
        t_fit = time.perf_counter() - self.setup_s - cfg.budget_spent_s
        last_epoch = self.start_epoch
        val: dict[str, Any] | None = None
        # --time-budget-min: the epoch count is fixed after the probe epochs (fresh runs only).
        budget = cfg.time_budget_min > 0 and not cfg.resume
        probe = self.start_epoch + cfg.probe_epochs if budget else 0
        # ... and an epoch that would overrun it stops early (one process only).
        end_s = t_fit + cfg.time_budget_min * 60.0 * (1.0 - RESERVE)
        self.ctx.deadline = end_s if budget and not self.info.enabled else None
        epoch = self.start_epoch
        while epoch < (cfg.epochs if not cfg.stop_epoch else min(cfg.epochs, cfg.stop_epoch)):
            epoch += 1
            stats = self._epoch_means(
                train_one_epoch(
                    self.ctx, self.data.stream.epoch(epoch), epoch, cfg.epochs,
                    self.iters_per_epoch,
                )
            )  # fmt: skip
            if stats["iters"] < self.iters_per_epoch:
                probe = self._out_of_time(epoch, stats)
            val = None
            if (self._should_eval(epoch) or (epoch == probe and self.data.val_samples)) and (
                self.info.is_main
            ):
                t0 = time.perf_counter()
                val = evaluate_model(
                    self.eval_model, self.model_cfg, self.data.val_samples, self.data.class_names
                )
                val["time_s"] = time.perf_counter() - t0
                if self.ctx.deadline is not None:  # keep time for the final validation
                    self.ctx.deadline = end_s - val["time_s"]
            val = dist_utils.broadcast_object(val, self.info)
            if epoch == probe:
                self._plan(time.perf_counter() - t_fit, epoch, stats, val)
            improved = val is not None and float(val["map50"]) > self.best_map50
            if improved:
                self.best_map50 = float(val["map50"])  # type: ignore[index]
            rng = dist_utils.all_gather_objects(rng_state(), self.info)
            if self.info.is_main:
                self._end_epoch(epoch, stats, val, improved, rng)
            dist_utils.barrier(self.info)
            last_epoch = epoch
        if self.info.enabled:
            self._check_in_sync(last_epoch)
        finished = last_epoch >= cfg.epochs
        if finished and self.info.is_main:
            self._finish(last_epoch, val)
        dist_utils.barrier(self.info)
        return {
            "run_dir": str(self.run_dir),
            "epoch": last_epoch,
            "finished": finished,
            "best_map50": self.best_map50,
            "val": val,
        }

    def _plan(
        self, elapsed_s: float, epoch: int, stats: dict[str, float], val: dict[str, Any] | None
    ) -> None:
        """Fix the epoch count to the time budget (rank 0 decides, every rank applies)."""
        cfg = self.cfg
        budget_s, eval_s = cfg.time_budget_min * 60.0, float((val or {}).get("time_s", 0.0))
        planned: int | None = None
        if self.info.is_main:
            planned = plan_epochs(
                remaining_s=budget_s - elapsed_s, done_epochs=epoch,
                epoch_s=float(stats["time_s"]), eval_s=eval_s,
                eval_interval=cfg.eval_interval, max_epochs=cfg.epochs,
            )  # fmt: skip
        planned = int(dist_utils.broadcast_object(planned, self.info))
        self.log.write({"type": "plan", "epoch": epoch, "epochs": planned,
                        "epoch_s": stats["time_s"], "elapsed_s": elapsed_s,
                        "eval_s": eval_s, "budget_s": budget_s})  # fmt: skip
        self._print(
            f"time budget {cfg.time_budget_min:g} min: {elapsed_s:.0f}s spent, "
            f"{stats['time_s']:.1f}s per epoch -> {planned} epochs (ceiling {cfg.epochs})"
        )
        cfg.epochs = planned
        self.scheduler.total_iters = planned * self.iters_per_epoch

    def _out_of_time(self, epoch: int, stats: dict[str, float]) -> int:
        """The time budget ran out inside `epoch`: it becomes the last one. Returns the new
        probe epoch (none)."""
        self.log.write({"type": "plan", "epoch": epoch, "epochs": epoch, "reason": "deadline",
                        "iters": stats["iters"], "budget_s": self.cfg.time_budget_min * 60.0})
        self._print(
            f"time budget {self.cfg.time_budget_min:g} min reached after {stats['iters']:.0f} "
            f"of {self.iters_per_epoch} iterations of epoch {epoch}: it is the last"
        )  # fmt: skip
        self.cfg.epochs = epoch
        return 0

    def _check_in_sync(self, epoch: int) -> None:
        """DDP: every rank must hold the very same weights; logged, and a warning if not."""
        digests = dist_utils.all_gather_objects(dist_utils.state_digest(self.model), self.info)
        in_sync = len(set(digests)) == 1
        self.log.write(
            {"type": "ddp_check", "epoch": epoch, "digests": digests, "in_sync": in_sync}
        )
        if not in_sync:
            warnings.warn(f"DDP ranks hold different weights: {digests}", stacklevel=1)

    def _end_epoch(
        self,
        epoch: int,
        stats: dict[str, float],
        val: dict[str, Any] | None,
        improved: bool,
        rng: list,
    ) -> None:
        metrics = {"train": stats, "val": brief_metrics(val)}
        cfg = self.cfg
        due = epoch % cfg.checkpoint_interval == 0 or epoch in (cfg.epochs, cfg.stop_epoch)
        if due or improved:
            ckpt = self._checkpoint(epoch, metrics, rng)
            if due:
                atomic_save(ckpt, self.run_dir / "last.pt")
            if improved:
                atomic_save(ckpt, self.run_dir / "best.pt")
        self.log.write(
            {
                "type": "epoch",
                "epoch": epoch,
                **stats,
                "val": brief_metrics(val),
                "best_map50": self.best_map50,
            }
        )
        msg = (
            f"epoch {epoch}/{self.cfg.epochs} loss {stats['total']:.4f} "
            f"(cls {stats['cls']:.4f} box {stats['box']:.4f} ctr {stats['ctr']:.4f}) "
            f"lr {stats['lr']:.2e} {stats['img_s']:.1f} img/s {stats['time_s']:.0f}s"
            f" (data wait {stats.get('data_s', 0.0):.0f}s)"
        )
        remaining = (self.cfg.epochs - epoch) * (stats["time_s"] + (val or {}).get("time_s", 0.0))
        msg += f" eta {remaining / 60:.1f} min"
        if val is not None:
            msg += (
                f" | val mAP@0.5 {val['map50']:.4f} mAP@0.5:0.95 {val['map50_95']:.4f}"
                f" (best {self.best_map50:.4f}) {val.get('time_s', 0.0):.0f}s"
            )
        self._print(msg)
        self._plot(force=epoch == self.cfg.epochs or epoch == self.cfg.stop_epoch)

    def _plot(self, force: bool = False) -> None:
        """Regenerate plots/*.png (at most every plot_interval_s seconds unless forced)."""
        now = time.perf_counter()
        if not force and now - self._last_plot < self.cfg.plot_interval_s:
            return
        self._last_plot = now
        try:
            from training.plots import make_plots  # matplotlib: imported on first use

            make_plots(self.run_dir)
        except Exception as exc:  # plots must never stop a training run
            warnings.warn(f"plotting failed: {exc}", stacklevel=1)

    def _finish(self, epoch: int, val: dict[str, Any] | None) -> None:
        last = self.run_dir / "last.pt"
        if last.exists():
            shutil.copyfile(last, self.run_dir / "final.pt")
        export_model = copy.deepcopy(self.eval_model).float().cpu()
        export_model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        extra = {"epoch": epoch, "metrics": {"val": brief_metrics(val)},
                 "train_config": self.cfg.to_dict()}  # fmt: skip
        save_weights_only(export_model, self.run_dir / "weights_fp16.pt", **extra)
        self._print(f"done: {self.run_dir / 'final.pt'}, {self.run_dir / 'weights_fp16.pt'}")


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train with `cfg` (joins torchrun's process group when launched by it)."""
    info = dist_utils.init_distributed(cfg.device)
    finished = False
    try:
        result = Trainer(cfg, info).fit()
        finished = True
        return result
    finally:
        dist_utils.cleanup(info, synchronize=finished)
