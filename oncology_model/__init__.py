"""Breast-cancer classifier."""
