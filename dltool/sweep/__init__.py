"""Hyperparameter sweeps: the sweep file (spec), Optuna storage and sampler, worker processes, the run loop, reports.

Inner order, checked by lint-imports: run -> workers -> sampler -> report | storage -> spec.
"""
