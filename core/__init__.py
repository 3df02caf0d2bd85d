"""Launchpad's core: models, data and inference, importable and testable without Streamlit."""
