"""World Models (Ha & Schmidhuber 2018, "Recurrent World Models Facilitate Policy Evolution", NeurIPS; arXiv
1803.10122): a VAE (V) compresses each frame to z, an MDN-RNN (M) predicts the next z, and a linear controller (C) on
[z, h] is found by CMA-ES, either in the real environment (CarRacing) or entirely inside M's dream (VizDoom).

The paper's procedures (its Car Racing and VizDoom experiments), as the runner drives it (the runner calls `policy` every env step and
`update` after it; every env step counts in the budget):
1. Collect: the first `data_episodes` training episodes act uniformly at random; they are V's and M's data set (the
   replay stores them, so a resumed run has them again): read from its RAM (`data_source` "memory"), or from its
   chunk files on disk ("disk", for a data set larger than RAM: V then trains on pools of `vae_pool_chunks` files).
2. V: `vae_updates` gradient steps of the ConvVAE (`wmbench.nn.vae`) on random frames of that data set
   (batch `vae_batch`, Adam lr `vae_lr`, KL tolerance 0.5 x z_dim).
3. M: the data set's frames are encoded once (mean and log-variance of q(z | frame)); `rnn_updates` gradient steps of
   the MDN-RNN (`wmbench.nn.mdn`) on windows of `rnn_seq` steps, z drawn from q per step (the released code
   samples z from the stored mean/log-variance), Adam lr `rnn_lr` (decaying towards `rnn_lr_min` by `rnn_lr_decay`
   per step when below 1, as the released Doom rnn_train.py), gradients clipped to `grad_clip`; the Doom model
   also predicts the done flag.
   Stages 2 and 3 run `stage_updates_per_step` gradient steps per env step, so the runner's checkpoints (at episode
   ends) save them part-way; the env steps taken meanwhile act at random and are not added to the data set.
4. C by CMA-ES (`wmbench.nn.evolution`, on the `cma` package): a population of `population` controllers
   a = tanh(W [z, h] + b) (`controller_input` "zh"; Doom "zch" also feeds the LSTM cell state), each scored by the
   mean return of `rollouts` episodes:
   - `evolve = "real"`: each training episode of the runner is one rollout of the current candidate; after
     population x rollouts episodes the generation is told to CMA-ES.
   - `evolve = "dream"`: at the end of every real training episode (from the end of stage 3), `dream_generations`
     generations are run inside M: all population x rollouts rollouts at once, from initial z drawn from the data
     set's first frames, next z sampled from the MDN at `temperature` (tau), an episode ending when the sampled done
     flag is set or after `dream_max_steps`; fitness = steps survived (the Doom reward). The real episodes meanwhile
     act with the search mean, so scores.csv shows the dream-trained controller in the real environment.
   - `rollout_backend` "inline" | "local" | "ray" (default "runner": as above): a generation's rollouts are tasks of
     a `wmbench.sweep_backends` task pool (this process, `rollout_workers` local processes, Ray), each a pure
     function of the candidate, its seed and the frozen V and M (real env: one episode in a fresh env of the
     runner's env factory; dream: one candidate's rollouts as a batch), gathered by task index, so every backend and
     worker count gives the same run. One generation runs after each real training episode, which acts with the
     search mean; the pool's env steps are logged (`es/rollout_steps`), not counted in the run's budget.
   `generations` > 0 stops the search after that many generations (the mean is then kept).
   Evaluation episodes act with the CMA-ES mean. Each generation prints best, mean, time and ETA.

Actions: a Box action space (the contract's [-1, 1]) takes the controller's tanh outputs, one per dimension
(CarRacing: steer, gas, brake; the runner's env maps [-1, 1] onto gas and brake's [0, 1]); a Discrete(n) space takes
one tanh output split into n equal bins (Doom's three actions, left / stay / right, at -1/3 and 1/3 as in the
released code). M sees a Box action as it is and a discrete action as one number, its index scaled to [-1, 1]
(the paper's Doom M has 1,678,785 parameters: an LSTM input of z (64) and one action value).

Sizes (the paper's experiments and parameter tables; the released code hardmaru/WorldModelsExperiments): z 32, LSTM 256,
5 mixtures, controller (32 + 256) x 3 + 3 = 867 parameters for CarRacing; z 64, LSTM 512, predicted done flag,
controller on [z, h, c] with one output and no bias (64 + 512 + 512 = 1,088 weights) for Doom, whose dream temperature
is 1.15 and whose done-flag loss weighs done steps 10x (released doomrnn.py `restart_factor`).
Acting in the real env, C and M read the encoder mean of z, or with `sample_z` a draw from q(z | frame) as the
released code (each pool rollout from a generator of its own seed, the runner's env from one saved with the method).
Where this module departs from the paper and the released code (random-rollout data set size, real-env step
counting) see docs/worldmodels.md.
"""

from __future__ import annotations

import math
import sys
import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method, MethodError
from wmbench.nn.evolution import CMAES, EvolutionError, check_population
from wmbench.nn.mdn import MDN, MDNRNN
from wmbench.nn.networks import count_params
from wmbench.nn.vae import ConvVAE
from wmbench.nn.world_model import finite_values
from wmbench.replay import ReplayError
from wmbench.seeding import derive_seed, generator_state, set_generator_state
from wmbench.sweep_backends import POOL_BACKENDS, TaskPool, make_pool

STAGES = ("collect", "vae", "rnn", "evolve")
CONTROLLER_INPUTS = ("zh", "zch")
ROLLOUT_BACKENDS = ("runner", *POOL_BACKENDS)
DATA_SOURCES = ("memory", "disk")


class RolloutError(RuntimeError):
    """A candidate rollout on a pool worker failed (its error, or its worker died): the generation is not told to
    CMA-ES, so the run resumes from its last checkpoint and evaluates the generation again. Not a WmbenchError, so a
    sweep retries the run (a dead worker is usually transient: memory, a lost node)."""


@dataclass(frozen=True)
class WorldModelsConfig:
    """The paper's CarRacing settings; Doom's differ per protocol (`PROTOCOL_DEFAULTS`); presets `cpu` (a reduced
    pipeline for this machine) and `tiny` (tests)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # tests only: seconds on 16x16 images
        "tiny": {
            "z_dim": 4, "depth": 4, "rnn_units": 8, "mixtures": 2, "data_episodes": 2, "vae_updates": 6,
            "vae_batch": 8, "rnn_updates": 6, "rnn_batch": 4, "rnn_seq": 8, "stage_updates_per_step": 2,
            "population": 4, "rollouts": 1, "dream_max_steps": 20,
        },
        # reduced CPU pipeline: the paper's networks, a small data set and search
        "cpu": {
            "data_episodes": 20, "vae_updates": 2000, "vae_batch": 32, "rnn_updates": 1000, "rnn_batch": 16,
            "rnn_seq": 100, "stage_updates_per_step": 4, "population": 16, "rollouts": 2, "dream_max_steps": 2100,
        },
    }
    PROTOCOL_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # the paper's VizDoom experiment and its Doom parameter table: z 64, LSTM 512, done flag, dream training at tau 1.15
        # released doomrnn/doomrnn.py and model.py: done-flag loss weight 10 on done steps, controller without bias
        "vizdoom_takecover": {
            "z_dim": 64, "rnn_units": 512, "predict_done": True, "done_weight": 10.0, "evolve": "dream",
            "temperature": 1.15, "controller_input": "zch", "controller_bias": False, "rnn_updates": 40000,
        },
    }
    # how many of V's and M's gradient steps run per env step: a scheduling choice of this runner (the paper trains
    # V and M offline), which changes no model or search setting
    # where candidate rollouts run: the candidates, rollouts per candidate and fitness rule do not change (every pool
    # backend and worker count gives the same numbers; "runner" draws other env episodes of the same procedure)
    RECIPE_IGNORED: ClassVar[frozenset[str]] = frozenset({
        "stage_updates_per_step", "rollout_backend", "rollout_workers", "rollout_threads", "rollout_address",
    })
    preset: str = "paper"
    # --- V (paper: agent model, VAE; appendix)
    z_dim: int = bounded(32, low=1)
    depth: int = bounded(32, low=1)  # CNN channels depth x (1, 2, 4, 8)
    kl_tolerance: float = bounded(0.5, low=0)
    vae_lr: float = bounded(1e-4, above=0, high=1)
    vae_batch: int = bounded(100, low=1, high=65536)
    vae_updates: int = bounded(1_000_000, low=0)  # released vae_train.py: 10 epochs of ~10M frames in batches of 100
    # --- M (paper: agent model, MDN-RNN; appendix)
    rnn_units: int = bounded(256, low=1)
    mixtures: int = bounded(5, low=1)
    predict_done: bool = False
    done_weight: float = bounded(1.0, low=0)  # weight of done steps in the done-flag loss (released Doom code: 10)
    rnn_lr: float = bounded(1e-3, above=0, high=1)
    # M's learning rate at its k-th step (k from 0): (rnn_lr - rnn_lr_min) x rnn_lr_decay^k + rnn_lr_min, the
    # released rnn_train.py schedule (Doom: decay_rate 0.99999, min_learning_rate 1e-5; CarRacing: decay_rate 1);
    # 1: constant rnn_lr
    rnn_lr_decay: float = bounded(1.0, above=0, high=1)
    rnn_lr_min: float = bounded(1e-5, low=0, high=1)
    rnn_batch: int = bounded(100, low=1, high=65536)
    rnn_seq: int = bounded(999, low=1, high=100000)
    rnn_updates: int = bounded(4000, low=0)
    grad_clip: float = bounded(1.0, above=0)
    temperature: float = bounded(1.0, above=0)  # tau of the dream (paper: VizDoom experiment, temperature table)
    # acting in the real env, C and M read z drawn from q(z | frame) (the released carracing/model.py encode_obs and
    # doomrnn/doomreal.py _encode) instead of its mean
    sample_z: bool = False
    # --- data and schedule
    data_episodes: int = bounded(10000, low=1)
    # where V's and M's data set is read from (docs/worldmodels.md, "Data set on disk"): "memory", the replay's RAM
    # (the data set must fit in it: 4 GiB holds about 350 CarRacing rollouts); "disk", the replay's chunk files
    # (the paper's 10,000 rollouts, 120 GB of frames): V trains on `vae_pool_chunks` chunks of the data set held in
    # RAM at a time, a new random draw of chunks after each pass over them; M and the dream read the encoded data set
    # (mean and log-variance of z per frame) and per-step actions and done flags, in RAM
    data_source: str = "memory"
    vae_pool_chunks: int = bounded(32, low=1)
    replay_chunk: int = bounded(1024, low=1)  # steps per replay chunk file (the runner's default; tests: fewer)
    stage_updates_per_step: int = bounded(1, low=1)
    # --- C and CMA-ES (paper: agent model, controller; Car Racing procedure)
    controller_input: str = "zh"
    controller_bias: bool = True
    controller_params: int = bounded(0, low=0)  # 0: as the sizes give; > 0: asserted (the paper's 867)
    population: int = bounded(64, low=1)
    rollouts: int = bounded(16, low=1)
    sigma0: float = bounded(0.1, above=0)
    evolve: str = "real"
    generations: int = bounded(0, low=0)  # 0: evolve until the budget ends
    dream_generations: int = bounded(1, low=1)  # per real training episode, with evolve = "dream"
    dream_max_steps: int = bounded(2100, low=1)
    # --- where candidate rollouts run (docs/worldmodels.md, "Candidate rollouts on workers")
    # "runner": real-env search in the runner's own env, one training episode per rollout; dream search in this
    # process as one batch. "inline" | "local" | "ray": each generation's rollouts are tasks of a
    # `wmbench.sweep_backends` pool (in this process, `rollout_workers` local processes, or Ray), every rollout a
    # pure function of the candidate, its seed and the frozen V and M, so all three give the same numbers
    rollout_backend: str = "runner"
    rollout_workers: int = bounded(1, low=1)
    rollout_threads: int = bounded(1, low=1)  # torch threads per rollout worker (and for "inline")
    rollout_address: str = ""  # Ray cluster address for rollout_backend="ray" ("": a local Ray instance)


def action_size(act_space: gymnasium.Space) -> int:
    """Controller outputs = M's action inputs: one per Box dimension, one for a Discrete space (its index as a value
    in [-1, 1]; the paper's Doom M takes the action as one number: 1,678,785 parameters with z 64 and LSTM 512)."""
    if isinstance(act_space, gymnasium.spaces.Discrete):
        return 1
    return int(act_space.shape[0])


class Controller:
    """a = tanh(W x + b) on x = [z, h] or [z, h, c]: a flat parameter vector of (inputs + 1) x outputs values, W
    first (row-major [outputs, inputs]), then b; without `bias` (the released Doom controller) only W."""

    def __init__(self, inputs: int, outputs: int, bias: bool = True):
        self.inputs, self.outputs, self.bias = int(inputs), int(outputs), bool(bias)

    @property
    def size(self) -> int:
        return (self.inputs + int(self.bias)) * self.outputs

    def check(self, params: np.ndarray | Tensor) -> None:
        if tuple(params.shape[-1:]) != (self.size,):
            raise MethodError(
                f"controller parameter vector of size {params.shape[-1]} does not fit a controller with "
                f"{self.inputs} inputs and {self.outputs} outputs ({self.size} = ({self.inputs} + {int(self.bias)}) x "
                f"{self.outputs})"
            )

    def act(self, params: Tensor, x: Tensor) -> Tensor:
        """params [P] or [N, P] (one controller per row of x [N, inputs]) -> actions in [-1, 1], [N, outputs]."""
        self.check(params)
        weight = params[..., : self.inputs * self.outputs].reshape(*params.shape[:-1], self.outputs, self.inputs)
        bias = params[..., self.inputs * self.outputs:] if self.bias else 0.0
        if params.dim() == 1:
            return torch.tanh(x @ weight.T + bias)
        return torch.tanh(torch.einsum("noi,ni->no", weight, x) + bias)


class WorldModels(Method):
    name = "worldmodels"
    Config = WorldModelsConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        if "image" not in obs_space:
            return f"World Models encodes frames with a VAE and needs an 'image' observation, got {sorted(obs_space)}"
        s = obs_space["image"]
        if len(s.shape) != 3 or s.dtype != np.uint8:
            return f"'image' must be uint8 HxWxC, got shape {s.shape} dtype {s.dtype}"
        if isinstance(act_space, gymnasium.spaces.Discrete):
            return None
        if isinstance(act_space, gymnasium.spaces.Box) and len(act_space.shape) == 1:
            if np.all(act_space.low == -1) and np.all(act_space.high == 1):
                return None
            return "Box actions must lie in [-1, 1] (the env contract normalises them)"
        return f"World Models acts in a Discrete or a 1-D Box action space, got {act_space}"

    def __init__(self, obs_space, act_space, config: WorldModelsConfig | None = None, device: str = "cpu",
                 seed: int = 0):
        config = config if config is not None else WorldModelsConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        if c.controller_input not in CONTROLLER_INPUTS:
            raise ConfigError(f"worldmodels: controller_input {c.controller_input!r} must be one of "
                              f"{CONTROLLER_INPUTS} ('zh': [z, h], CarRacing; 'zch': [z, h, c], Doom)")
        if c.evolve not in ("real", "dream"):
            raise ConfigError(f"worldmodels: evolve {c.evolve!r} must be 'real' (CarRacing) or 'dream' (Doom)")
        if c.evolve == "dream" and not c.predict_done:
            raise ConfigError("worldmodels: evolve='dream' needs predict_done=true: a dream episode ends when M "
                              "predicts it (add --set predict_done=true)")
        if c.data_source not in DATA_SOURCES:
            raise ConfigError(f"worldmodels: data_source {c.data_source!r} must be one of {DATA_SOURCES} ('memory': "
                              "the replay's RAM; 'disk': its chunk files, for a data set larger than RAM)")
        if c.rollout_backend not in ROLLOUT_BACKENDS:
            raise ConfigError(f"worldmodels: rollout_backend {c.rollout_backend!r} must be one of {ROLLOUT_BACKENDS} "
                              "('runner': the runner's env; 'local': --set rollout_workers=N processes; 'ray')")
        if c.rnn_lr_min > c.rnn_lr:
            raise ConfigError(f"worldmodels: rnn_lr_min={c.rnn_lr_min:g} is above rnn_lr={c.rnn_lr:g}: the decay "
                              "would raise the learning rate; the released Doom code decays 1e-3 towards 1e-5")
        check_population(c.population)
        self.device = torch.device(device)
        self.is_discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        self.outputs = self.m_action_dim = action_size(act_space)
        self.n_actions = int(act_space.n) if self.is_discrete else 0
        inputs = c.z_dim + c.rnn_units * (2 if c.controller_input == "zch" else 1)
        self.controller = Controller(inputs, self.outputs, c.controller_bias)
        if c.controller_params and c.controller_params != self.controller.size:
            raise ConfigError(
                f"worldmodels: controller_params={c.controller_params} does not match the sizes: a controller on "
                f"[{c.controller_input}] has ({inputs} inputs + {int(c.controller_bias)}) x {self.outputs} outputs = "
                f"{self.controller.size} "
                f"parameters (z_dim={c.z_dim}, rnn_units={c.rnn_units}); fix z_dim / rnn_units / controller_input, "
                "or set controller_params=0"
            )
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "worldmodels/init"))
                self.vae = ConvVAE(obs_space["image"].shape, c.z_dim, c.depth).to(self.device)
                self.rnn = MDNRNN(c.z_dim, self.m_action_dim, c.rnn_units, c.mixtures, c.predict_done).to(self.device)
        except ValueError as e:
            raise ConfigError(f"worldmodels: {e}") from e
        self.vae_opt = torch.optim.Adam(self.vae.parameters(), lr=c.vae_lr)
        self.rnn_opt = torch.optim.Adam(self.rnn.parameters(), lr=c.rnn_lr)
        self.es = CMAES(self.controller.size, c.population, c.sigma0, derive_seed(seed, "worldmodels/cma"))
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "worldmodels/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "worldmodels/act"))
        # z draws when acting with sample_z in the runner's env (pool rollouts draw from their own seed)
        self.gen_z = torch.Generator(self.device).manual_seed(derive_seed(seed, "worldmodels/z"))
        self.rng = np.random.default_rng(derive_seed(seed, "worldmodels/data"))
        self.stage = "collect"
        self.episodes_started = self.episodes_finished = 0
        self.vae_steps = self.rnn_steps = 0
        self.candidate_returns: list[float] = []  # real-env evolution: returns of this generation's rollouts so far
        self.episode_return = 0.0
        self.rollout = False  # the current training episode acts with C from its first step
        self.pending_generations = 0
        self.pending_metrics: dict[str, float] = {}
        self.gen_seconds: list[float] = []
        self._data: dict[str, Any] | None = None  # the data set (rebuilt from the replay, never saved)
        self.data_steps = 0  # data_source "disk": the stream's length when the data set was complete
        self._vae_pool: tuple[int, Tensor] | None = None  # data_source "disk": (pool number, its frames)
        self.rollout_env_steps = 0  # env steps of pool rollouts (envs of the factory: not in the run's budget)
        self.env_factory: Any = None  # wmbench.envs.EnvFactory, from the runner (set_env_factory)
        self._pool: TaskPool | None = None  # the rollout pool of this process (built at its first generation)
        self.first_z: tuple[Tensor, Tensor] | None = None  # pool workers of a dream search: q(z) of first frames

    def set_env_factory(self, factory: Any) -> None:
        self.env_factory = factory

    # ------------------------------------------------------------------ sizes
    def parameter_counts(self) -> dict[str, int]:
        return {"vae": count_params(self.vae), "mdn_rnn": count_params(self.rnn), "controller": self.controller.size}

    # ------------------------------------------------------------------ acting
    def _features(self, image: Any, state: tuple[Tensor, Tensor], generator: torch.Generator
                  ) -> tuple[Tensor, Tensor]:
        """(z, controller input) for a batch of frames and the LSTM state (h, c) [1, N, units]; z is q(z | frame)'s
        mean, or with `sample_z` a draw from it (from `generator`)."""
        pixels = torch.as_tensor(np.ascontiguousarray(image), device=self.device)
        z, logvar = self.vae.encode(pixels)
        if self.config.sample_z:
            z = ConvVAE.sample(z, logvar, generator)
        parts = [z, state[0][0]] + ([state[1][0]] if self.config.controller_input == "zch" else [])
        return z, torch.cat(parts, -1)

    def _index(self, action: Tensor) -> Tensor:
        """One output in [-1, 1] -> the index of its bin among n equal bins (Doom: left / stay / right)."""
        n = self.n_actions
        return torch.floor((action[:, 0] + 1) / 2 * n).clamp(0, n - 1).long()

    def _index_value(self, index: Tensor) -> Tensor:
        """A discrete action as M sees it: index 0 ... n-1 -> -1 ... 1, [N, 1]."""
        return (2 * index.float() / max(1, self.n_actions - 1) - 1).reshape(-1, 1)

    def _to_env(self, action: Tensor) -> np.ndarray:
        """Controller outputs [N, outputs] in [-1, 1] -> env actions."""
        if self.is_discrete:
            return self._index(action).cpu().numpy()
        return action.cpu().numpy().astype(np.float32)

    def _m_action(self, action: Tensor) -> Tensor:
        """Controller outputs -> M's action input (the taken action's value for discrete spaces)."""
        if self.is_discrete:
            return self._index_value(self._index(action))
        return action

    def _acting_params(self, mode: str) -> Tensor:
        c = self.config
        if mode == "train" and c.evolve == "real" and c.rollout_backend == "runner" and not self._search_done():
            k = len(self.candidate_returns) // self.config.rollouts
            params = self.es.ask()[k]
        else:
            params = self.es.mean
        return torch.as_tensor(params, dtype=torch.float32, device=self.device)

    def _search_done(self) -> bool:
        return bool(self.config.generations) and self.es.generation >= self.config.generations

    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        is_first = np.asarray(obs["is_first"]).reshape(-1)
        n = is_first.shape[0]
        if mode == "train":
            self._count(obs)
        if self.stage != "evolve" and mode == "train":
            if self.is_discrete:
                action = torch.randint(self.n_actions, (n,), generator=self.gen_act, device=self.device)
                return action.cpu().numpy(), None
            action = torch.rand(n, self.m_action_dim, generator=self.gen_act, device=self.device) * 2 - 1
            return action.cpu().numpy().astype(np.float32), None
        return self._act(self._acting_params(mode), obs, state, self.gen_z)

    def _act(self, params: Tensor, obs: dict[str, Any], state: Any, generator: torch.Generator
             ) -> tuple[np.ndarray, Any]:
        """C with parameters `params` on a batch of observations, M's state carried (zeroed where `is_first`);
        `generator` draws z when `sample_z`."""
        is_first = np.asarray(obs["is_first"]).reshape(-1)
        n = is_first.shape[0]
        if state is None:
            state = self.rnn.initial(n, self.device)
        else:  # a new episode starts from a zero LSTM state
            keep = torch.as_tensor(~is_first, device=self.device).float().reshape(1, n, 1)
            state = (state[0] * keep, state[1] * keep)
        z, x = self._features(obs["image"], state, generator)
        action = self.controller.act(params, x)
        _, state = self.rnn.step(z, self._m_action(action), state)
        return self._to_env(action), state

    def _count(self, obs: dict[str, Any]) -> None:
        """Training-episode bookkeeping: episode counts, and in real-env evolution each rollout's return."""
        first = bool(np.asarray(obs["is_first"]).reshape(-1)[0])
        last = bool(np.asarray(obs["is_last"]).reshape(-1)[0])
        if first:
            self.episodes_started += 1
            self.episode_return = 0.0
            self.rollout = self.stage == "evolve"  # a rollout of C only if the whole episode acted with C
        else:
            self.episode_return += float(np.asarray(obs["reward"]).reshape(-1)[0])
        if not last:
            return
        self.episodes_finished += 1
        if not self.rollout or self._search_done():
            return
        if self.config.evolve == "dream":
            self.pending_generations += self.config.dream_generations
            return
        if self.config.rollout_backend != "runner":  # real-env search on a pool: one generation per real episode
            self.pending_generations += 1
            return
        self.candidate_returns.append(self.episode_return)
        c = self.config
        if len(self.candidate_returns) == c.population * c.rollouts:
            fitness = np.asarray(self.candidate_returns).reshape(c.population, c.rollouts).mean(1)
            self.pending_metrics = self._tell(fitness)  # logged by the next update
            self.candidate_returns = []

    # ------------------------------------------------------------------ stages
    def update(self, replay: Any, step: int) -> dict[str, float]:
        c = self.config
        if self.pending_metrics:
            metrics, self.pending_metrics = self.pending_metrics, {}
            return metrics
        if self.stage == "collect":
            if self.episodes_finished >= c.data_episodes:
                self.data_steps = self.data_steps or int(replay.total)
                # "disk" reads the data set from chunk files: wait (acting at random) for the one holding its end
                if c.data_source == "memory" or replay.chunks * replay.chunk_size >= self.data_steps:
                    self.stage = "vae"
            return {}
        if self.stage == "vae":
            metrics = [self._vae_step(replay) for _ in range(min(c.stage_updates_per_step, c.vae_updates - self.vae_steps))]
            if self.vae_steps >= c.vae_updates:
                self.stage = "rnn"
            return _mean(metrics)
        if self.stage == "rnn":
            metrics = [self._rnn_step(replay) for _ in range(min(c.stage_updates_per_step, c.rnn_updates - self.rnn_steps))]
            if self.rnn_steps >= c.rnn_updates:
                self.stage = "evolve"
                self.gen_t0 = time.monotonic()
            return _mean(metrics)
        if self.pending_generations and not self._search_done():
            self.pending_generations -= 1
            if c.rollout_backend != "runner":
                return self._pool_generation(replay)
            return self._dream_generation(replay)
        return {}

    def data(self, replay: Any) -> dict[str, Any]:
        """The data set: the first `data_episodes` training episodes of the replay (frames, M's actions, dones)."""
        if self._data is None and self.config.data_source == "disk":
            self._data = self._data_on_disk(replay)
        if self._data is None:
            episodes = replay.episodes()[: self.config.data_episodes]
            if len(episodes) < self.config.data_episodes:
                raise MethodError(
                    f"worldmodels: the replay holds {len(episodes)} complete episodes, fewer than data_episodes="
                    f"{self.config.data_episodes}: the replay (in RAM, 4 GiB by default) evicted the oldest; lower "
                    "data_episodes (e.g. --set data_episodes=300 for CarRacing's 1,000-frame episodes)"
                )
            frames = [torch.as_tensor(e["image"]) for e in episodes]
            actions = [self._m_action_of(e["action"]) for e in episodes]
            dones = [torch.as_tensor(e["is_terminal"]).float() for e in episodes]
            lengths = np.array([len(f) for f in frames])
            self._data = {"frames": frames, "actions": actions, "dones": dones, "lengths": lengths,
                          "offsets": np.concatenate([[0], np.cumsum(lengths)]), "all": torch.cat(frames)}
        return self._data

    def _stored_chunk(self, replay: Any, index: int) -> dict[str, np.ndarray]:
        try:
            return replay.stored_chunk(index)
        except (AttributeError, ReplayError) as e:
            raise MethodError(f"worldmodels: data_source='disk' reads the data set from the replay's chunk files: {e}; "
                              "run through `wmbench run` (its replay writes them), or use data_source='memory'") from e

    def _data_on_disk(self, replay: Any) -> dict[str, Any]:
        """The data set read from the replay's chunk files (data_source "disk"): one pass over them for the episode
        bounds, M's actions and the done flags; frames stay on disk (`_vae_frames`, `_frame_chunks`). The episodes
        are the stream's first `data_episodes`, from step 0 on, one after another (one env)."""
        if getattr(replay, "directory", None) is None:
            self._stored_chunk(replay, 0)  # raises, naming what is missing
        n, size = self.config.data_episodes, replay.chunk_size
        parts: dict[str, list[np.ndarray]] = {"action": [], "is_terminal": [], "is_first": []}
        ends: list[int] = []
        index = 0
        while len(ends) < n:
            if index >= replay.chunks:
                raise MethodError(f"worldmodels: the replay's {replay.chunks} chunk files hold {len(ends)} complete "
                                  f"episodes, fewer than data_episodes={n}")
            chunk = self._stored_chunk(replay, index)
            if np.any(chunk["worker"] != 0):
                raise MethodError("worldmodels: data_source='disk' reads one env's stream, and the replay holds "
                                  "steps of several envs; run one env")
            for key, values in parts.items():
                values.append(chunk[key])
            ends += [index * size + int(t) + 1 for t in np.flatnonzero(chunk["is_last"])]
            index += 1
        offsets = np.concatenate([[0], ends[:n]]).astype(np.int64)
        stream = {key: np.concatenate(values)[: offsets[-1]] for key, values in parts.items()}
        if not stream["is_first"][offsets[:-1]].all():
            raise MethodError("worldmodels: the replay's stream is not one episode after another from step 0")
        bounds = list(zip(offsets[:-1], offsets[1:], strict=True))
        return {"actions": [self._m_action_of(stream["action"][a:b]) for a, b in bounds],
                "dones": [torch.as_tensor(stream["is_terminal"][a:b]).float() for a, b in bounds],
                "lengths": np.diff(offsets), "offsets": offsets, "chunk_size": size}

    def _frame_chunks(self, replay: Any) -> Any:
        """The data set's frames in order, a piece at a time (RAM: 1,000 frames; disk: a chunk file's worth)."""
        data = self.data(replay)
        if self.config.data_source == "memory":
            yield from data["all"].split(1000)
            return
        end, size = int(data["offsets"][-1]), data["chunk_size"]
        for index in range(-(-end // size)):
            yield torch.as_tensor(self._stored_chunk(replay, index)["image"][: end - index * size])

    def _vae_frames(self, replay: Any) -> Tensor:
        """The frames V's next batch is drawn from: all of the data set (RAM), or (disk) the current pool of
        `vae_pool_chunks` chunk files. Pool k holds the chunks at positions [k' P, (k' + 1) P) of epoch e's random
        permutation of the data set's chunks (k = e x pools per epoch + k'), and serves P x chunk_size / vae_batch
        updates (a pass over its frames); so the pool is a function of V's step count and a resumed run reads the
        same frames."""
        data = self.data(replay)
        if self.config.data_source == "memory":
            return data["all"]
        end, size, c = int(data["offsets"][-1]), data["chunk_size"], self.config
        chunks = -(-end // size)
        per_pool = min(c.vae_pool_chunks, chunks)
        pool = self.vae_steps // max(1, per_pool * size // c.vae_batch)
        if self._vae_pool is None or self._vae_pool[0] != pool:
            epoch, part = divmod(pool, -(-chunks // per_pool))
            order = np.random.default_rng(derive_seed(self.seed, "worldmodels/vae_pool", epoch)).permutation(chunks)
            frames = [torch.as_tensor(self._stored_chunk(replay, int(i))["image"][: end - int(i) * size])
                      for i in sorted(order[part * per_pool:(part + 1) * per_pool])]
            self._vae_pool = (pool, torch.cat(frames))
        return self._vae_pool[1]

    def _m_action_of(self, action: np.ndarray) -> Tensor:
        action = torch.as_tensor(np.asarray(action))
        if self.is_discrete:
            return self._index_value(action.long().reshape(-1))
        return action.float().reshape(-1, self.m_action_dim)

    def _vae_step(self, replay: Any) -> dict[str, float]:
        c, frames = self.config, self._vae_frames(replay)
        index = torch.as_tensor(self.rng.integers(0, len(frames), c.vae_batch))
        loss, terms = self.vae.loss(frames[index].to(self.device), self.gen_train, c.kl_tolerance)
        values = finite_values("worldmodels", {"vae/loss": loss, **terms}, self.vae_steps, ["vae_lr"])
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_opt.step()
        self.vae_steps += 1
        return dict(zip(["vae/loss", *terms], values, strict=True))

    @torch.no_grad()
    def _encoded(self, replay: Any) -> dict[str, Any]:
        """Every data-set frame encoded once by the trained V: mean and log-variance (recomputed after a resume:
        the same weights give the same values)."""
        data = self.data(replay)
        if "mean" not in data:
            means, logvars = [], []
            for frames in self._frame_chunks(replay):
                for chunk in frames.split(1000):
                    mean, logvar = self.vae.encode(chunk.to(self.device))
                    means.append(mean)
                    logvars.append(logvar)
            data["mean"], data["logvar"] = torch.cat(means), torch.cat(logvars)
        return data

    def _rnn_step(self, replay: Any) -> dict[str, float]:
        """One MDN-RNN step on `rnn_batch` windows of `rnn_seq` transitions (z_t, a_t) -> z_{t+1} (and done_{t+1})
        from random episodes and offsets; shorter episodes are padded and masked."""
        c, data = self.config, self._encoded(replay)
        lengths, offsets = data["lengths"], data["offsets"]
        usable = np.flatnonzero(lengths >= 2)
        if not len(usable):
            raise MethodError("worldmodels: no data-set episode has two steps; M needs transitions")
        seq = c.rnn_seq
        a_in = torch.zeros(c.rnn_batch, seq, self.m_action_dim)
        done = torch.zeros(c.rnn_batch, seq)
        mask = torch.zeros(c.rnn_batch, seq)
        index = torch.zeros(c.rnn_batch, seq + 1, dtype=torch.long)  # frames z_t .. z_{t+seq} of each window
        for b in range(c.rnn_batch):
            e = int(usable[self.rng.integers(len(usable))])
            transitions = lengths[e] - 1
            start = int(self.rng.integers(0, max(1, transitions - seq + 1)))
            n = min(seq, transitions - start)
            index[b, : n + 1] = torch.arange(offsets[e] + start, offsets[e] + start + n + 1)
            a_in[b, :n] = data["actions"][e][start:start + n]
            done[b, :n] = data["dones"][e][start + 1:start + 1 + n]
            mask[b, :n] = 1.0
        # z drawn from q(z | frame) for every window step, as the released code trains M on sampled z
        index = index.to(data["mean"].device)
        z = ConvVAE.sample(data["mean"][index], data["logvar"][index], self.gen_train).cpu()
        z_in, z_next = z[:, :-1] * mask[..., None], z[:, 1:] * mask[..., None]
        to = self.device
        loss, terms = self.rnn.loss(z_in.to(to), a_in.to(to), z_next.to(to), done.to(to) if c.predict_done else None,
                                    mask.to(to), done_weight=c.done_weight)
        values = finite_values("worldmodels", {"rnn/loss": loss, **terms}, self.rnn_steps, ["rnn_lr"])
        lr = self.rnn_learning_rate(self.rnn_steps)
        for group in self.rnn_opt.param_groups:
            group["lr"] = lr
        self.rnn_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.rnn.parameters(), c.grad_clip)
        self.rnn_opt.step()
        self.rnn_steps += 1
        return {**dict(zip(["rnn/loss", *terms], values, strict=True)), "rnn/lr": lr}

    def rnn_learning_rate(self, step: int) -> float:
        """M's learning rate at its step `step` (0 = the first): the released rnn_train.py's
        (learning_rate - min_learning_rate) x decay_rate^step + min_learning_rate, step being the global step
        before the update; exactly `rnn_lr` without decay."""
        c = self.config
        if c.rnn_lr_decay == 1.0:
            return c.rnn_lr
        return (c.rnn_lr - c.rnn_lr_min) * c.rnn_lr_decay**step + c.rnn_lr_min

    # ------------------------------------------------------------------ C by CMA-ES
    @torch.no_grad()
    def dream_fitness(self, params: np.ndarray, initial_z: Tensor, generator: torch.Generator | None = None
                      ) -> np.ndarray:
        """Steps survived inside M for controllers `params` [N, P], one rollout each from initial z [N, z_dim];
        M's samples are drawn from `generator` (default: the method's training generator)."""
        c = self.config
        generator = self.gen_train if generator is None else generator
        n = params.shape[0]
        weights = torch.as_tensor(params, dtype=torch.float32, device=self.device)
        z = initial_z.to(self.device)
        state = self.rnn.initial(n, self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        survived = torch.zeros(n, device=self.device)
        for _ in range(c.dream_max_steps):
            parts = [z, state[0][0]] + ([state[1][0]] if c.controller_input == "zch" else [])
            action = self.controller.act(weights, torch.cat(parts, -1))
            h, state = self.rnn.step(z, self._m_action(action), state)
            z = MDN.sample(self.rnn.mdn(h), c.temperature, generator)
            survived += alive.float()  # reward 1 for every step taken alive (the Doom reward)
            done_prob = torch.sigmoid(self.rnn.done(h).squeeze(-1) / c.temperature)
            alive &= torch.rand(n, generator=generator, device=self.device) >= done_prob
            if not alive.any():
                break
        return survived.cpu().numpy().astype(np.float64)

    def _dream_generation(self, replay: Any) -> dict[str, float]:
        c, data = self.config, self._encoded(replay)
        candidates = self.es.ask()
        params = np.repeat(candidates, c.rollouts, axis=0)
        starts = data["offsets"][:-1][self.rng.integers(0, len(data["lengths"]), len(params))]
        index = torch.as_tensor(starts)
        initial_z = ConvVAE.sample(data["mean"][index], data["logvar"][index], self.gen_train)
        fitness = self.dream_fitness(params, initial_z).reshape(c.population, c.rollouts).mean(1)
        return self._tell(fitness)

    # ------------------------------------------------------------------ candidate rollouts on a pool
    def _pool_generation(self, replay: Any) -> dict[str, float]:
        """One generation with its rollouts as pool tasks: real env, one task per (candidate, rollout) in a fresh env
        of seed derive_seed(run seed, "worldmodels/rollout", generation, candidate, rollout); dream, one task per
        candidate (its `rollouts` dream rollouts as one batch, from a generator of seed derive_seed(run seed,
        "worldmodels/dream", generation, candidate)). Results are gathered by task index, so the fitness is the
        same on every backend and for any number of workers."""
        c = self.config
        pool = self._rollout_pool(replay)
        candidates, g = self.es.ask(), self.es.generation
        if c.evolve == "real":
            tasks = [("real", k, r, derive_seed(self.seed, "worldmodels/rollout", g, k, r), candidates[k])
                     for k in range(c.population) for r in range(c.rollouts)]
        else:
            tasks = [("dream", k, None, derive_seed(self.seed, "worldmodels/dream", g, k), candidates[k])
                     for k in range(c.population)]
        results = pool.map(tasks)
        failed = [(task, result.error) for task, result in zip(tasks, results, strict=True) if result.error]
        if failed:
            self._close_pool()  # a worker may be dead: the next generation (after a resume) starts fresh ones
            (kind, k, r, seed, _), error = failed[0]
            which = f"candidate {k}" + (f", rollout {r} (env seed {seed})" if kind == "real" else f" (seed {seed})")
            raise RolloutError(
                f"worldmodels generation {g + 1}: {which} failed on the {pool.backend} rollout pool "
                f"({len(failed)} of {len(tasks)} tasks without a result): {error.strip().splitlines()[0]}\n"
                f"{error.strip()}\nThe generation was not told to CMA-ES; running the same command resumes the run "
                "from its last checkpoint and evaluates it again"
            )
        fitness = np.stack([np.asarray(res.value[0], dtype=np.float64) for res in results]).reshape(
            c.population, c.rollouts).mean(1)
        steps = int(sum(res.value[1] for res in results))
        if c.evolve == "real":
            self.rollout_env_steps += steps
        metrics = self._tell(fitness)
        metrics["es/rollout_steps"] = float(steps)  # env steps (real) or dream steps of this generation's rollouts
        return metrics

    def _rollout_pool(self, replay: Any) -> TaskPool:
        """The pool of this process, built at its first generation: V's and M's weights are frozen from then on, so
        each worker receives them once."""
        c = self.config
        if self._pool is None:
            if c.evolve == "real" and self.env_factory is None:
                raise MethodError(
                    f"worldmodels: rollout_backend={c.rollout_backend!r} runs real-env rollouts in envs of the runner's "
                    "env factory (Method.set_env_factory), and none was given; run it through `wmbench run`, or "
                    "use rollout_backend='runner'"
                )
            context = {
                "obs_space": self.obs_space, "act_space": self.act_space, "config": self.config, "seed": self.seed,
                "vae": {k: v.detach().cpu().clone() for k, v in self.vae.state_dict().items()},
                "rnn": {k: v.detach().cpu().clone() for k, v in self.rnn.state_dict().items()},
                "factory": self.env_factory, "first_z": None,
            }
            if c.evolve == "dream":
                data = self._encoded(replay)
                first = torch.as_tensor(data["offsets"][:-1])
                context["first_z"] = (data["mean"][first].cpu().clone(), data["logvar"][first].cpu().clone())
            self._pool = make_pool(c.rollout_backend, f"{__name__}:rollout_worker", f"{__name__}:rollout_task", context,
                                   workers=c.rollout_workers, threads=c.rollout_threads, address=c.rollout_address)
            self._pool_finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool_finalizer()
            self._pool = None

    @torch.no_grad()
    def real_rollout(self, params: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
        """One episode of controller `params` in a fresh env of seed `seed` (the runner's env factory): its return and
        steps."""
        env = self.env_factory(seed)
        generator = torch.Generator(self.device).manual_seed(derive_seed(seed, "worldmodels/z"))  # sample_z's draws
        try:
            weights = torch.as_tensor(params, dtype=torch.float32, device=self.device)
            obs, state, total, steps = env.reset(), None, 0.0, 0
            while not obs["is_last"]:
                action, state = self._act(weights, {k: np.asarray(v)[None] for k, v in obs.items()}, state,
                                          generator)
                obs = env.step(np.asarray(action)[0])
                total += float(obs["reward"])
                steps += 1
        finally:
            env.close()
        return np.array([total]), steps

    @torch.no_grad()
    def dream_rollouts(self, params: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
        """`rollouts` dream rollouts of controller `params` as one batch, every draw (first frame, its z, M's
        samples) from a generator of seed `seed`: steps survived of each, and their sum."""
        assert self.first_z is not None
        generator = torch.Generator(self.device).manual_seed(int(seed))
        mean, logvar = self.first_z
        starts = torch.randint(len(mean), (self.config.rollouts,), generator=generator)
        initial_z = ConvVAE.sample(mean[starts].to(self.device), logvar[starts].to(self.device), generator)
        survived = self.dream_fitness(np.repeat(params[None], self.config.rollouts, 0), initial_z, generator)
        return survived, int(survived.sum())

    def _tell(self, fitness: np.ndarray) -> dict[str, float]:
        self.es.tell(fitness)
        now = time.monotonic()
        seconds = now - getattr(self, "gen_t0", now)
        self.gen_t0 = now
        self.gen_seconds = (self.gen_seconds + [seconds])[-20:]
        g = self.es.generation
        left = (self.config.generations - g) if self.config.generations else None
        eta = f", ETA {_duration(left * np.mean(self.gen_seconds))}" if left else ""
        print(f"worldmodels generation {g}: best {fitness.max():.1f}, mean {fitness.mean():.1f}, "
              f"{seconds:.1f} s{eta}", file=sys.stderr, flush=True)
        # wall time is printed, never logged: metrics.jsonl must be the same in a repeated or resumed run
        return {"es/generation": float(g), "es/best": float(fitness.max()), "es/mean": float(fitness.mean())}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "stage": self.stage,
            "vae": self.vae.state_dict(),
            "rnn": self.rnn.state_dict(),
            "vae_opt": self.vae_opt.state_dict(),
            "rnn_opt": self.rnn_opt.state_dict(),
            "es": self.es.state_dict(),
            "gen_train": self.gen_train.get_state(),
            "gen_act": self.gen_act.get_state(),
            "gen_z": self.gen_z.get_state(),
            "rng": generator_state(self.rng),
            "counters": {
                "episodes_started": self.episodes_started, "episodes_finished": self.episodes_finished,
                "vae_steps": self.vae_steps, "rnn_steps": self.rnn_steps,
                "pending_generations": self.pending_generations, "rollout_env_steps": self.rollout_env_steps,
                "data_steps": self.data_steps,
            },
            "candidate_returns": torch.tensor(self.candidate_returns, dtype=torch.float64),
            "episode_return": self.episode_return,
            "rollout": self.rollout,
            "pending_metrics": dict(self.pending_metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("stage") not in STAGES:
            raise MethodError(f"worldmodels checkpoint has stage {state.get('stage')!r}, not one of {STAGES}")
        try:
            self.vae.load_state_dict(state["vae"])
            self.rnn.load_state_dict(state["rnn"])
        except RuntimeError as e:
            raise MethodError(f"worldmodels checkpoint (preset {state.get('preset')!r}) does not fit this config "
                              f"(preset {self.config.preset!r}): {str(e).splitlines()[0]}") from e
        try:
            self.es.load_state_dict(state["es"])
        except EvolutionError as e:
            raise MethodError(f"worldmodels checkpoint: {e}") from e
        self.stage = state["stage"]
        self.vae_opt.load_state_dict(state["vae_opt"])
        self.rnn_opt.load_state_dict(state["rnn_opt"])
        self.gen_train.set_state(state["gen_train"])
        self.gen_act.set_state(state["gen_act"])
        if "gen_z" in state:  # checkpoints from before sample_z (which never drew from it)
            self.gen_z.set_state(state["gen_z"])
        set_generator_state(self.rng, state["rng"])
        for key, value in state["counters"].items():
            setattr(self, key, int(value))
        self.candidate_returns = [float(x) for x in state["candidate_returns"].tolist()]
        self.episode_return = float(state["episode_return"])
        self.rollout = bool(state["rollout"])
        self.pending_metrics = {k: float(v) for k, v in state["pending_metrics"].items()}
        self.gen_t0 = time.monotonic()
        self._data = self._vae_pool = None
        self._close_pool()  # built again from the loaded weights at the next generation


def _mean(metrics: list[dict[str, float]]) -> dict[str, float]:
    if not metrics:
        return {}
    return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def rollout_worker(context: dict[str, Any]) -> WorldModels:
    """A pool worker's state: the method rebuilt on CPU from the frozen V and M weights (`_rollout_pool`)."""
    agent = WorldModels(context["obs_space"], context["act_space"], context["config"], "cpu", context["seed"])
    agent.vae.load_state_dict(context["vae"])
    agent.rnn.load_state_dict(context["rnn"])
    agent.env_factory, agent.first_z = context["factory"], context["first_z"]
    return agent


def rollout_task(agent: WorldModels, task: tuple[str, int, int | None, int, np.ndarray]) -> tuple[np.ndarray, int]:
    """One pool task: ("real", candidate, rollout, env seed, params) or ("dream", candidate, None, seed, params)."""
    kind, _, _, seed, params = task
    if kind == "real":
        return agent.real_rollout(params, seed)
    return agent.dream_rollouts(params, seed)


__all__ = ["Controller", "RolloutError", "WorldModels", "WorldModelsConfig", "action_size", "rollout_task",
           "rollout_worker"]
