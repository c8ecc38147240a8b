"""RL core: pure functions for logprobs/entropy, tool-boundary entropy, advantages, losses,
shaping, filters and rewards (one module each), the name -> function tables a config chooses
components from (``registry.py``), and the named recipes that bind them (``recipes.py``).

Import from the modules themselves; this package re-exports nothing, so importing
``toolrl_jax.rl.registry`` (which the config does) never imports the config back.
"""
