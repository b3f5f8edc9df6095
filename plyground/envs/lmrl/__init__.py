"""The LMRL-Gym tasks (Abdulhai et al. 2023, reference code ``abdulhaim/LMRL-Gym``) as ``TextEnv`` s.

Each module keeps the benchmark's rewards, horizons and observation forms (see the table at the end
of ``ALGORITHMS.md`` in the project notes) and ships an expert or scripted policy:

- :mod:`plyground.envs.lmrl.wordle`: ``WordleEnv``, ``feedback``, ``WordleSolver``.
- :mod:`plyground.envs.lmrl.maze`: ``MazeEnv`` (fully and partially observed), ``MazeExpert``.

The data these envs need at run time (word lists, maze layouts) ships inside the package; see
``data/README.md`` for where the word lists come from.
"""
