import os

# Tests never touch the network: defaults load from installed wheels, overrides from local folders.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("LAUNCHPAD_CONFIG", os.devnull)  # a developer's launchpad.toml does not leak in
