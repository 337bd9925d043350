"""Language-model unlearning (issue 26, in progress): answer-only losses, NPO and SimNPO,
and the TOFU metrics as open-unlearning computes them."""
