"""Routing policy: which deployment a call tries next (balance), whether it may (limits, budgets),
and the one lease around each attempt (lease), with the calls in flight (calls)."""
