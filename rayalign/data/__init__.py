"""Readers, writers and Arrow schemas of every stage's dataset."""
