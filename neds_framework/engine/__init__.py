"""The run engine: the stages a recipe names (prepare, and later train, eval, finetune)."""
