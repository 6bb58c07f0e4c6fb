"""Applikant: a self-hosted git platform for small teams."""
