"""The project's operational checks and tools, run with `python -m ops.<name>` from the
repository's root (the Makefile's targets): the image and cluster tests, the loopback registry and
package index they use, the manifests' validation, the lock audit, the interop run."""
