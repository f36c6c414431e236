"""titlegen: fine-tune a small LLM to write e-commerce product descriptions from product titles.

Pipeline, one module each: config -> data -> prompts -> models -> train -> generate -> evaluate
-> report -> demo, and runner (the notebook series under papermill).
"""

from titlegen_lib.config import Config, ConfigError

__all__ = ["Config", "ConfigError"]
__version__ = "0.1.0"
