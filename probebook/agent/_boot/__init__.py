"""A directory put on PYTHONPATH by `probebook agent run`: its `sitecustomize` starts the agent.

It is a package only so that installs carry it; Python finds ``sitecustomize`` here as a
top-level module when this directory is on the path.
"""
