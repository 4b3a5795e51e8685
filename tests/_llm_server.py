"""The scripted server now ships with the package; tests keep importing it from here."""

from hagfish_jax.shell.advisors.scripted_server import LLMServer, Sleep, Status, completion  # noqa: F401
