"""Language-model unlearning pieces: the TOFU-style generator and TOFU's files, the tokenizer,
answer-only losses with NPO and SimNPO, jitted evaluation, and the TOFU metrics as
open-unlearning computes them."""
