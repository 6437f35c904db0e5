"""The multimodal transformer that tokenizers feed and heads read (no plugin imports here).

batch        Batch, Masks and the mask-shape conventions
interfaces   the plugin API: Tokenizer, Head, Masker (and Tokens, ModalityParts, ModelOutput)
nn/          single-purpose layers: rotary positions, attention, transformer, per-session layers
neds         the NEDS model (registered as model 'neds' by `registration`)
build        build a model from a recipe and the registries
eval_masks   the encoding, decoding and per-variable decoding masks of evaluation
"""
