"""Pruning: prototype (SSP) and difficulty scores, and the policies that select from them."""
