"""Classical baselines on the toolkit's domain files: what a ConvLSTM run must beat.

    from convlstm_tl.baselines import BaselineConfig, run_baselines, load_baseline_run

    result = run_baselines(BaselineConfig(source="St", target="ms", target_fraction=0.1))
    result.table()                                  # the table the command line prints
    run = load_baseline_run(result.run_dir)
    row = run.rows[0]
    row.predictions("ms", run.fingerprint("ms"))    # class ids into row.class_names

Methods (:mod:`~convlstm_tl.baselines.methods`): ``summary-logreg`` (summary
statistics of each series channel, or TF-IDF of tokens, and a logistic
regression) and ``minirocket`` (aeon, the ``baselines`` extra). They are
trained on the same files, splits and labelled target subsets as the ConvLSTM
runs (:mod:`~convlstm_tl.baselines.runner`), and written as one run folder
(:mod:`~convlstm_tl.baselines.record`). Nothing here imports Keras.
"""

from convlstm_tl.baselines.config import BaselineConfig
from convlstm_tl.baselines.features import split_fingerprint
from convlstm_tl.baselines.methods import METHOD_NAMES
from convlstm_tl.baselines.record import (
    BaselineRow, BaselineRun, DomainIdentity, format_table, is_baseline_run, load_baseline_run,
)
from convlstm_tl.baselines.runner import BaselineResult, plan_baselines, run_baselines

__all__ = ["METHOD_NAMES", "BaselineConfig", "BaselineResult", "BaselineRow", "BaselineRun", "DomainIdentity",
           "format_table", "is_baseline_run", "load_baseline_run", "plan_baselines", "run_baselines",
           "split_fingerprint"]
