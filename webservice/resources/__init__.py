"""One flask-restx Namespace per resource."""
