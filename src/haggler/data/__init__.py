"""Data shipped with the package: the starter model (`haggler starter-model` installs it; `make
starter-model` reproduces it: `haggler train --seed 0` with the default budget)."""
