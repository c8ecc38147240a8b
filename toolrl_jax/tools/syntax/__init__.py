"""Call syntaxes: how tool calls, results and answers are written in model text."""

from toolrl_jax.tools.syntax.base import DEFAULT_ARG_KEYS, CallSyntax
from toolrl_jax.tools.syntax.hermes import HermesSyntax
from toolrl_jax.tools.syntax.markdown import MarkdownSyntax
from toolrl_jax.tools.syntax.simpletir import SimpleTirSyntax
from toolrl_jax.tools.syntax.xml_tags import XmlSyntax

__all__ = ["DEFAULT_ARG_KEYS", "CallSyntax", "HermesSyntax", "MarkdownSyntax", "SimpleTirSyntax",
           "XmlSyntax"]
