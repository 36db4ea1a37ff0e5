"""The bench: a matrix of recipes x methods, trained, evaluated and ranked.

``compose`` (the matrix as mmengine configs), ``runs`` (each cell run once, resumable),
``leaderboard`` (Markdown, CSV, JSON, plot), ``cards`` (model cards of runs), ``presets``.
"""
