"""Messages of quiver.v1, generated from proto/quiver/v1/quiver.proto when the package is built (setup.py)."""
