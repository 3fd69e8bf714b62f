"""The settings of a baseline run, validated once (the toolkit's checks of names, ranges and seeds)."""

from dataclasses import dataclass

from convlstm_tl.baselines.methods import METHOD_NAMES
from convlstm_tl.config import MAX_INT32, check_domain_name, check_range, check_run_name, check_seed
from convlstm_tl.errors import ConfigError
from convlstm_tl.jsonio import shown


@dataclass
class BaselineConfig:
    """Everything that defines a baseline run: classical classifiers on the domain files a ConvLSTM run uses."""

    source: str = ""  # domain whose training split every baseline learns from (file <data_dir>/<source>.h5)
    target: str = ""  # optional second domain: its labelled subset is trained on alone and pooled with the source
    # Comma-separated method names (see convlstm_tl.baselines.methods); empty means every method, minirocket
    # only where aeon is installed and the domain suits it.
    methods: str = ""
    target_fraction: float | None = None  # keep this fraction of the target's training split (as a transfer does)
    target_per_class: int | None = None  # or this many samples per class; neither: the whole training split
    with_val: bool = False  # also train on the source's train + val splits (alone, and pooled with the target)
    seed: int = 0  # the target subset and every random choice of the methods
    name: str = ""  # run name; empty means <source>-<target>-baselines, or <source>-baselines
    data_dir: str = ""  # empty means $CONVLSTM_TL_DATA or ./data
    runs_dir: str = "runs"
    overwrite: bool = False  # replace an existing run of the same name

    def validate(self):
        """Refuse a missing source, unknown methods, bad subset options or names; change nothing."""
        if not self.source:
            raise ConfigError("no source domain given (source is empty)", field="source")
        check_domain_name(self.source, "source")
        if self.target:
            check_domain_name(self.target, "target")
            if self.target == self.source:
                raise ConfigError(f"the target must be another domain than the source. Received: source="
                                  f"{shown(self.source)}, target={shown(self.target)}", field="target")
        self.method_list()
        if self.target_fraction is not None and self.target_per_class is not None:
            raise ConfigError("give target_fraction or target_per_class, not both",
                              field=("target_fraction", "target_per_class"))
        if not self.target and (self.target_fraction is not None or self.target_per_class is not None):
            field = "target_fraction" if self.target_fraction is not None else "target_per_class"
            raise ConfigError(f"{field} chooses the target's labelled samples; give a target domain too",
                              field=(field, "target"))
        if self.target_fraction is not None:
            check_range("target_fraction", self.target_fraction, 0.0, 1.0, low_open=True)
        if self.target_per_class is not None:
            check_range("target_per_class", self.target_per_class, 1, MAX_INT32)
        check_seed(self.seed)
        check_run_name(self.run_name)

    def method_list(self):
        """The methods asked for, in order (empty: none named, so every method is meant)."""
        if not isinstance(self.methods, str):
            raise ConfigError(f"methods must be a string of method names separated by commas."
                              f" Received: methods={shown(self.methods)}", field="methods")
        names = [part.strip() for part in self.methods.split(",")] if self.methods.strip() else []
        unknown = [name for name in names if name not in METHOD_NAMES]
        if unknown:
            raise ConfigError(f"unknown method {shown(unknown[0])}; known methods are {', '.join(METHOD_NAMES)}."
                              f" Received: methods={shown(self.methods)}", field="methods")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(f"method {repeated[0]} is named twice. Received: methods={shown(self.methods)}",
                              field="methods")
        return names

    @property
    def run_name(self):
        """The run's folder name: ``name``, else ``<source>-<target>-baselines`` or ``<source>-baselines``."""
        if self.name:
            return self.name
        return f"{self.source}-{self.target}-baselines" if self.target else f"{self.source}-baselines"

    @property
    def target_label(self):
        """How the target's labelled subset is named in tables: ``ms 10%``, ``ms 20/class`` or ``ms train``."""
        if self.target_fraction is not None:
            return f"{self.target} {self.target_fraction * 100:g}%"
        if self.target_per_class is not None:
            return f"{self.target} {self.target_per_class}/class"
        return f"{self.target} train"
