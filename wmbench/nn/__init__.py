"""Shared model-based RL building blocks (the nouns methods are made of).

- `distributions`: symlog/symexp, two-hot, unimix categoricals, Bernoulli, bounded Normal (tensor functions)
- `networks`: MLP, Norm, BlockLinear, CNN encoder/decoder
- `rssm`: the recurrent state-space model (categorical or Gaussian latents)
- `world_model`: PlaNet's Gaussian pixel world model, its loss and episode schedule (PlaNet, Dreamer v1); the
  DreamerV2 code's step schedule
- `returns`: lambda-returns, percentile return normalisation, EMA (slow) networks
- `behaviour`: Dreamer v1's behaviour learning in imagination (tanh-Normal head, rollout, analytic actor/value losses)
  and DreamerV2's lambda-targets, state weights and weighted actor/critic losses (DreamerV2, DreamerPro, Director)
- `sac`: soft actor-critic pieces: tanh-Gaussian actor, twin Q with target copies, automatic temperature
- `ensemble`, `planners`, `gp`: probabilistic ensembles, CEM/MPPI planners, Gaussian processes
- `vae`, `mdn`, `evolution`: World Models' convolutional VAE, mixture density heads and the MDN-RNN, a resumable
  CMA-ES (on `cma`)

Import the submodule you need (`from wmbench.nn.rssm import RSSM`); this package imports nothing heavy itself.
"""
