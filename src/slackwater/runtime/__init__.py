"""The moving parts: intake, workers, finalizer and the monitor that drives batches."""
