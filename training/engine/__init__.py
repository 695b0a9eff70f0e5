"""What one training run is made of: targets, losses, the epoch loop, optimiser, schedule, EMA,
checkpoints, time budget, run log, DDP helpers and the in-training validation."""
