"""Real networks: do the prescriptions make deep networks train, and do learning rates transfer?

Run ``python -m rmtalign.experiments --out DIR [--full] [--only NAME]`` (``docs/experiments.md``).
Needs the ``experiments`` extra (torch, mnist1d, scikit-learn, mup, matplotlib).

* :mod:`.data`: the tasks (MNIST-1D generated procedurally, scikit-learn's digits, a random
  teacher network), nothing downloaded;
* :mod:`.models`: MLPs and ResNets of model (12) under SP, NTK, MF+muP (depth-muP), FSC and the
  ``mup`` package's width-muP, with SGD or Adam;
* :mod:`.train`: seeded training runs and a resumable process-pool grid;
* :mod:`.curves`: experiments 1 and 2 (training curves, the BFA during training);
* :mod:`.transfer`: experiment 3 (learning-rate transfer across width and depth);
* :mod:`.suite`: the experiments' grids, default and ``--full``.
"""
