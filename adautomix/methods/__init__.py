"""Everything that turns a batch into a loss: the mixing methods and the AdAutoMix step."""
