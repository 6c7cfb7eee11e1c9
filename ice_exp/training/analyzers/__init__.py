"""Train the seed's real analyzers (facexlib's BiSeNet, face-alignment's FAN) on toyface against the oracles,
and score any parser / landmark model against the oracles on worlds it was not trained on."""
