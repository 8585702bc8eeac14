"""Acting without torch: the serving snapshot (numpy weights -> Q-values -> a move), the
exploration policies with the propensity of each move, and the rule-based buyers the agent is
measured against.

Imports `haggler.core` only; numpy, never torch."""
