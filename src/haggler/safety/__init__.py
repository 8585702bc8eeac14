"""Safe online learning: held-out evaluation with confidence intervals, off-policy evaluation of
logged negotiations, the promotion gate, A/B tests, the rollback monitor, and `safe_learning`,
which ties them together for the learner.

Imports `core`, `policy` and `store`; never torch (it judges numpy snapshots)."""
