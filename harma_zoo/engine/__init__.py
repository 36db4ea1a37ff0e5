"""Training and evaluation machinery: the Runner set-up, hooks, metric, checkpoints and recipes."""
