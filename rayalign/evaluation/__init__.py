"""Evaluation of the aligned policy against the SFT policy on held-out prompts."""
