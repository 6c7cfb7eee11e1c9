"""Training recipes, each trained once and cached: the analyzers on toyface (BiSeNet, FAN), the toyface
attribute classifier, the seed's CelebA classifier. Above the models they train; the run layer builds the
toyface classifier through its config target."""
