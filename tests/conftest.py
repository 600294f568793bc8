import os

# Let idle OpenMP threads sleep instead of spinning (torch and numba share the runtime; see reconstruction/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
