"""Photos in and pictures out: header checks before any decoder allocates (`headers`,
`png_checks`), decoding (`decode`), every accepted image source turned into the model's
input (`sources`), and the overlays written next to the maps (`overlay`)."""
