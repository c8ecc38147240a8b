"""toolrl_jax: RL for tool-using LLM agents in JAX (TEPO, TAO-RL, AutoTool)."""

__version__ = "0.1.0"
