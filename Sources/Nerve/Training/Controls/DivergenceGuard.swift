// DivergenceGuard: a run whose loss stops being finite ends with the last good model.

/// Keeps a copy of the model as it was after the last finished epoch, so that a run whose loss
/// becomes NaN or infinite stops with those parameters instead of the broken ones.
struct DivergenceGuard {
  var lastGood: ModelSnapshot

  init(model: Sequential) { lastGood = model.snapshot() }

  init(lastGood: ModelSnapshot) { self.lastGood = lastGood }

  /// Remembers the model after a finished epoch.
  mutating func epochFinished(model: Sequential) { lastGood = model.snapshot() }

  /// Restores the last good parameters and returns the error to report.
  func stop(_ d: TrainingDiverged, model: Sequential) -> NerveError {
    model.restore(lastGood)
    let restored = d.epoch == 1 ? " (its initial parameters)" : ""
    return NerveError(
      .diverged, at: "epoch \(d.epoch), step \(d.step)",
      "the loss became \(d.value.isNaN ? "NaN" : "infinite"); training stopped and the model was restored to the end of epoch \(d.epoch - 1)\(restored). Try a smaller learning rate."
    )
  }
}
