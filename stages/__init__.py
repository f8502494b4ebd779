"""The DVC stages of the distillation pipeline, one entry script each (`python -m stages.<name>`).

They share the library in common/.
"""
