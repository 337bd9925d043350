"""The unlearning audit: scores that tell unlearned models from retrained ones."""
