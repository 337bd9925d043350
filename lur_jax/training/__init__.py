"""Devices, meshes and shardings, the training loop and its steppers, checkpoints and the
model cache."""
