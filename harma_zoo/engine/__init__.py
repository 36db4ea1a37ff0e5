"""Training and evaluation machinery: metrics, loops and the pieces they share."""
