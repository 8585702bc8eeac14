"""Learning with torch: the double DQN (network, update, model files), pretraining against the
simulated sellers, the online learner and the learner process that trains from the store, and
checkpoints.

Imports `core`, `policy`, `store` and `safety` (the learner process judges its candidates). The
only layer that loads torch: serving and the web app act with the numpy snapshots it publishes."""
