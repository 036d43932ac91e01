"""`python -m monitor profile`: a first schema for a model, written from its reference file.

The pure core, `columns.profile(frame, options)`, types every column of the reference (held-out
rows with the target and the model's prediction) and returns a `model.Profile` (the model's
outputs and event time come from `outputs`); `text.render(profile, ...)` writes it as a commented
schema file (`contract.schema`'s format); `command` is the command line.

Typing rules (each decision a user may want to revisit is a comment in the file):
- floats are numeric; strings and booleans categorical; integers categorical when they take
  few values (a code: 0/1, a rating, a month), numeric otherwise (a count, an amount);
- numeric features get their observed range as information and no `range`: a range refuses
  values outside it (to the DLQ), so a range drawn from the data would hide the drift that
  pushes values past it;
- strings with too many distinct values (ids, free text) and columns with empty values are
  left out with a note, never binned or filled: a chi-square test over hundreds of one-off
  values, or over what a fill made up, measures nothing;
- the task: a classifier when the target (and the prediction) hold strings, booleans or a handful
  of whole numbers (0.0 and 1.0 included), a regression otherwise;
- a prediction, probability, id, timestamp or target column is never a feature. A classifier's
  probability columns are proba_<class> (what `scorer reference` writes), `--probabilities`, or
  columns named like a probability ("prob" in the name) holding values in [0, 1]: one for a binary
  model (the positive class's, found from the predictions), or one per class (the class in the name);
- the event-time format from the `--ts` column's values (epoch seconds, epoch milliseconds, ISO 8601
  with `T` or a space, with or without an offset), refused with an example when it cannot be told;
- the message layout: our scorer's when the prediction column is `prediction` (what `scorer
  reference` writes), else the reference's own column names as top-level fields (another system's
  log, written like its reference); `--layout` and the field flags change it.
"""
