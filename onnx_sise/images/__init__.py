"""Photos in and pictures out: header checks before any decoder allocates (`headers`,
`png_checks`), decoding (`decode`), every accepted photo source as RGB (`sources`), the
one path from any accepted image to the model's input (`model_input`), the blur of a
model input (`blur`) and the overlays written next to the maps (`overlay`)."""
