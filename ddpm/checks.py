"""Checks of single config values, one convention for all: a ValueError that names the field, what is allowed and
what was given. Also the allowed values of every choice, each list written once, and the arguments each network
accepts, checked without torch so that the workflow refuses a network it cannot build before any job starts.
And the workflow config against its JSON schema, each problem one line: where it is, what is allowed, and the
closest valid name.
"""

import copy
import difflib
import numbers
import operator

from ddpm import samplers

ARCHITECTURES = ("course", "ddpm")  # ddpm.unet.UNet, ddpm.ddpm_unet.DDPMUNet
SCHEDULES = ("linear", "cosine")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
AUTO_SWITCH = ("auto", "on", "off")
DATASETS = ("digits", "cifar10", "folder")
SAMPLERS = tuple(samplers.SAMPLERS)  # the names in ddpm.samplers' registry
TIMESTEP_SPACINGS = samplers.TIMESTEP_SPACINGS
GUIDANCES = samplers.GUIDANCES
PREDICTIONS = ("eps", "v", "x0")  # what the network predicts
LOSS_WEIGHTINGS = ("uniform", "min_snr")
EXTRACTORS = ("classifier", "inception")
# what the evaluate job scores per draw (ddpm.metrics.score_draw), in the metric rows' order
METRICS = ("fid", "fid_balanced", "class_mix_error", "precision", "recall", "memorisation")
CONDITIONING_METRICS = ("class_accuracy",)  # scored only for samples drawn with class labels, after METRICS
# the metric rows' columns beside the metrics and their `_sampling_se`: any other column is a swept sampling field
METRIC_ROW_FIELDS = ("experiment", "seed", "epoch", "extractor", "num_samples", "sampling_draws", "num_reference",
                     "num_reference_features")

COURSE_GROUPS = 8  # GroupNorm groups in every block of the course UNet
COURSE_IMAGE_SIZES = tuple(2**k for k in range(3, 9))  # 8, 16, ..., 256
DDPM_GROUPS = 32  # GroupNorm groups in every block of the paper's UNet


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def metric_columns(columns) -> list[str]:
    """The metrics among `columns` (a metric row's keys or a table's columns), in the rows' order."""
    return [metric for metric in (*METRICS, *CONDITIONING_METRICS) if metric in columns]


def variant_columns(columns) -> list[str]:
    """The columns of a metric row or table that name its sampling variant (a swept sampling field, as
    `sampling_<field>` where the field's name is taken): all but METRIC_ROW_FIELDS, the metrics and their
    `_sampling_se`, in the given order."""
    metrics = (*METRICS, *CONDITIONING_METRICS)
    known = {*METRIC_ROW_FIELDS, *metrics, *(f"{metric}_sampling_se" for metric in metrics)}
    return [column for column in columns if column not in known]


def variant_label(values: dict) -> str:
    """A sampling variant's columns and values as a label, 'guidance_scale=2, sampler=ddim'; those without a value
    (NaN, None) left out."""
    return ", ".join(f"{column}={value:g}" if isinstance(value, float) else f"{column}={value}"
                     for column, value in values.items() if value is not None and value == value)


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum] (NumPy integers too, bools not)."""
    try:
        integer = operator.index(value)
    except TypeError:
        integer = None
    if isinstance(value, bool) or integer is None or integer < minimum or (maximum is not None and integer > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return integer


def check_betas(beta1, beta2) -> None:
    """The linear schedule's beta_1 and beta_T (Ho et al. 2020: 1e-4 and 0.02)."""
    real = all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in (beta1, beta2))
    if not (real and 0.0 < beta1 < beta2 < 1.0):
        raise ValueError(f"beta1 and beta2 must satisfy 0 < beta1 < beta2 < 1, got {beta1!r}, {beta2!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def check_course_unet(hidden_size, image_size=None) -> None:
    """The course UNet: GroupNorm(8) on every width, three poolings and a bottleneck of at most 4x4 (the image
    size is checked when it is known)."""
    if not _is_int(hidden_size) or hidden_size <= 0 or hidden_size % COURSE_GROUPS:
        raise ValueError(f"hidden_size must be a positive multiple of {COURSE_GROUPS} for architecture 'course' "
                         f"(GroupNorm uses {COURSE_GROUPS} groups), got {hidden_size!r}")
    if image_size is not None:
        check_choice("image_size", image_size, COURSE_IMAGE_SIZES)


def check_ddpm_unet(hidden_size, image_size, channel_mult, num_res_blocks, attention_resolutions, dropout) -> None:
    """The UNet of Ho et al. (2020, Appendix B): level i works at resolution image_size / 2**i with
    hidden_size * channel_mult[i] channels, each a multiple of GroupNorm's 32 groups."""
    if not _is_int(hidden_size) or hidden_size <= 0 or hidden_size % DDPM_GROUPS:
        raise ValueError(f"hidden_size must be a positive multiple of {DDPM_GROUPS} (GroupNorm uses {DDPM_GROUPS} "
                         f"groups on every width hidden_size * channel_mult[i]), got {hidden_size!r}")
    check_int("image_size", image_size, minimum=4)
    if not isinstance(channel_mult, (list, tuple)) or not channel_mult or \
            not all(_is_int(m) and m >= 1 for m in channel_mult):
        raise ValueError("channel_mult must be a non-empty list of positive integers (one width multiplier per "
                         f"resolution), got {channel_mult!r}")
    levels = len(channel_mult)
    if image_size / 2 ** (levels - 1) < 4:
        raise ValueError(f"channel_mult has {levels} levels, which would downsample image_size {image_size} "
                         f"below 4x4; image_size {image_size} allows at most {(image_size // 4).bit_length()} levels")
    if image_size % 2 ** (levels - 1):
        raise ValueError(f"image_size must be divisible by 2**(len(channel_mult) - 1) = {2 ** (levels - 1)} so "
                         f"that every downsampling halves it exactly, got {image_size!r}")
    resolutions = [image_size // 2**i for i in range(levels)]
    if not isinstance(attention_resolutions, (list, tuple)) or \
            not all(_is_int(r) and r in resolutions for r in attention_resolutions):
        raise ValueError(f"attention_resolutions must be a list of resolutions the network reaches, from "
                         f"{resolutions}, got {attention_resolutions!r}")
    check_int("num_res_blocks", num_res_blocks, minimum=1)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")


def check_workflow_config(config: dict, schema_path) -> None:
    """Validate the workflow config against the JSON schema at `schema_path` (config/schema.yaml), filling in the
    schema's defaults in place; one ValueError for all problems, one line each, e.g. "experiments.base.hiden_size
    is not a known field (did you mean hidden_size?); allowed: ...". jsonschema and yaml are imported here only."""
    import jsonschema
    import yaml

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    validator = _filling_defaults(jsonschema.validators.validator_for(schema))(schema)
    problems = sorted(problem for error in validator.iter_errors(config) for problem in _schema_problems(error))
    if problems:
        raise ValueError("\n".join(line for _, line in problems))


def _filling_defaults(validator_class):
    """`validator_class` that also sets each missing property of an object to its schema `default`."""
    import jsonschema

    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


def _schema_problems(error) -> list[tuple[list[str], str]]:
    """(the field's path, one line) for each problem of a jsonschema ValidationError: an unknown field (one per
    name, with the allowed names and the closest of them), or jsonschema's message after the path (with the closest
    allowed value)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        unknown = [str(name) for name in error.instance if name not in allowed]
        return [([*map(str, path), name], f"{_dotted([*path, name])} is not a known field{_closest(name, allowed)}; "
                 f"allowed: {', '.join(allowed)}") for name in unknown]
    message = error.message
    if error.validator == "enum" and isinstance(error.instance, str):
        message += _closest(error.instance, [str(value) for value in error.validator_value])
    return [([*map(str, path)], f"{_dotted(path) or 'the config'}: {message}")]


def _dotted(path: list) -> str:
    """experiments.base.lr, seeds[0]"""
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")


def _closest(name: str, allowed: list[str]) -> str:
    matches = difflib.get_close_matches(name, allowed, n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""
