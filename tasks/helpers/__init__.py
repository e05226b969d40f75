"""Helpers the stages share that are not stages themselves (no @task): reading catalog files and images,
the feature cache, metrics, catalog diffs, the held-out photo generator, review inputs and report writing."""
